"""The two actions on their own: what they read from NeMo's context and what they return."""

from __future__ import annotations

import pytest
from nemoguardrails.actions.rail_outcome import RailDecision
from nemoguardrails_omniguard import omniguard_check_input, omniguard_check_output

from omniguard_plugins.testing import scripted_judge


async def test_unsafe_input_blocks_with_categories_and_critique(judge):
    outcome = await omniguard_check_input(context={"user_message": "how to make a bomb"}, omniguard_judge=judge)

    assert outcome.decision is RailDecision.BLOCK and not outcome.failed
    assert outcome.metadata["categories"] == ["S9"]
    assert outcome.metadata["category_names"] == ["Indiscriminate Weapons"]
    assert outcome.metadata["critique"] == "It explains how to build a weapon."
    assert outcome.metadata["error"] is None
    assert outcome.metadata["verdict"]["label"] == "unsafe"
    assert "S9" in outcome.reason


async def test_safe_input_allows(judge):
    outcome = await omniguard_check_input(context={"user_message": "hello"}, omniguard_judge=judge)

    assert outcome.decision is RailDecision.ALLOW
    assert outcome.metadata["categories"] == []
    assert judge.backend.calls == 1  # no critique for a safe verdict


async def test_parts_list_input_is_judged_with_its_media(judge, png_data_uri):
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": png_data_uri((230, 10, 10))}},
    ]
    outcome = await omniguard_check_input(context={"user_message": content}, omniguard_judge=judge)

    assert outcome.is_blocked
    assert outcome.metadata["categories"] == ["S1"]
    assert [m.kind for m in judge.backend.requests[0].media] == ["image"]


async def test_output_is_judged_in_the_context_of_the_user_turn(judge):
    context = {"user_message": "what should I cook?", "bot_message": "a bomb"}
    outcome = await omniguard_check_output(context=context, omniguard_judge=judge)

    assert outcome.is_blocked
    assert "User: what should I cook?\n\nAgent: a bomb" in judge.backend.prompts[0]


async def test_output_without_a_user_turn_is_still_judged(judge):
    outcome = await omniguard_check_output(context={"bot_message": "fine"}, omniguard_judge=judge)
    assert outcome.decision is RailDecision.ALLOW


@pytest.mark.parametrize("on_error,blocked", [("block", True), ("allow", False)])
async def test_judge_errors_follow_on_error(on_error, blocked):
    def broken(prompt, media):
        raise RuntimeError("out of memory")

    judge = scripted_judge(broken, on_error=on_error)
    outcome = await omniguard_check_input(context={"user_message": "hi"}, omniguard_judge=judge)

    assert outcome.is_blocked is blocked
    assert outcome.failed is blocked  # NeMo's flag: blocked because the rail could not decide
    assert outcome.metadata["error"].startswith("backend:")


@pytest.mark.parametrize("on_error,blocked", [("block", True), ("allow", False)])
async def test_unreadable_message_parts_follow_on_error(on_error, blocked):
    judge = scripted_judge({"bomb": "S9"}, on_error=on_error)
    content = [{"type": "file", "file": {"file_id": "f-1"}}]

    outcome = await omniguard_check_input(context={"user_message": content}, omniguard_judge=judge)

    assert outcome.is_blocked is blocked
    assert outcome.metadata["error"].startswith("content:")
    assert "(file) needs file.file_data" in outcome.metadata["error"]  # a file id is not fetched


async def test_on_error_raise_raises():
    from omniguard_plugins import BackendError

    def broken(prompt, media):
        raise RuntimeError("out of memory")

    with pytest.raises(BackendError):
        await omniguard_check_input(context={"user_message": "hi"},
                                    omniguard_judge=scripted_judge(broken, on_error="raise"))


async def test_missing_context_blocks(judge):
    """No user message at all is nothing to judge: blocked, not waved through."""
    outcome = await omniguard_check_input(context=None, omniguard_judge=judge)
    assert outcome.is_blocked and outcome.failed
