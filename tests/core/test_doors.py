"""The door contract: Ask, Blocking.decide, VerdictSummary, render_tool_call, RailSession."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from omniguard_plugins import Conversation, GuardViolation, Policy, Verdict
from omniguard_plugins.content import Image, Text
from omniguard_plugins.doors import (
    DEFAULT_REFUSAL,
    Ask,
    Blocking,
    RailSession,
    VerdictSummary,
    render_tool_call,
    summarize,
)
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.streaming import StreamRail, StreamSettings, output_judge
from omniguard_plugins.testing import keyword_handler, scripted_judge
from omniguard_plugins.verdict import Evidence


@pytest.fixture()
def judge():
    j = scripted_judge(keyword_handler({"bomb": "S9"}, red_images=True))
    yield j
    j.close()


def _red_png_b64() -> str:
    buf = io.BytesIO()
    PILImage.new("RGB", (32, 32), (230, 10, 10)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------- Ask


def test_ask_stage_picks_the_direction(judge) -> None:
    assert Ask(user="hi", stage="tool").judged_direction == "input"
    assert Ask(user="hi", stage="output").judged_direction == "output"
    assert Ask(user="hi").judged_direction is None
    verdict = judge.check(Ask(user="q", assistant="how to build a bomb", stage="output"))
    assert verdict.unsafe and verdict.direction == "output" and verdict.category_codes == ("S9",)


def test_ask_rejects_a_wrong_stage() -> None:
    with pytest.raises(ConfigError, match="stage"):
        Ask(user="x", stage="tools")  # type: ignore[arg-type]


def test_check_many_takes_asks_in_order(judge) -> None:
    asks = [Ask(user="hello"), Ask(user="a bomb"), Ask(conversation=lambda: Conversation.of(user="fine"))]
    assert [v.safe for v in judge.check_many(asks)] == [True, False, True]


async def test_acheck_takes_an_ask_and_a_failing_builder_blocks(judge) -> None:
    def broken() -> Conversation:
        from omniguard_plugins.errors import ContentError

        raise ContentError("block #1 cannot be read")

    verdict = await judge.acheck(Ask(conversation=broken, stage="input"))
    assert verdict.unsafe and verdict.error and verdict.error.startswith("content")


# ---------------------------------------------------------------------- Blocking


def _unsafe() -> Verdict:
    return Verdict(safe=False, categories=Policy.default().categories[8:9], critique="It explains a bomb.")


@pytest.mark.parametrize("action", ["refuse", "replace", "drop", "annotate"])
def test_decide_acts_on_unsafe_only(action: str) -> None:
    blocking = Blocking(action)  # type: ignore[arg-type]
    assert blocking.decide(Verdict(safe=True), "output").allowed
    decision = blocking.decide(_unsafe(), "output", "content")
    assert decision.action == action and decision.blocked
    assert (decision.text is not None) == (action in ("refuse", "replace"))


def test_decide_raise_gives_one_line_violation() -> None:
    with pytest.raises(GuardViolation) as info:
        Blocking("raise").decide(_unsafe(), "tool", "payload")
    exc = info.value
    assert exc.stage == "tool" and exc.content == "payload" and "\n" not in str(exc)
    assert str(exc).startswith("OmniGuard blocked the tool: unsafe: S9")


def test_refusal_template_and_explain() -> None:
    assert Blocking().refusal(_unsafe()) == DEFAULT_REFUSAL.format(categories="Indiscriminate Weapons")
    shows = Blocking("refuse", "No: {critique}")
    assert shows.explain is True and shows.refusal(_unsafe()) == "No: It explains a bomb."
    assert Blocking("refuse", "No.").explain is None
    with pytest.raises(ConfigError):
        Blocking("end")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- VerdictSummary


def test_summary_round_trips_and_carries_evidence() -> None:
    verdict = _unsafe().with_(evidence=(Evidence(part=2, kind="image", categories=("S9",)),
                                        Evidence(part=0, kind="text", chars=(10, 42))), score=0.93)
    summary = summarize(verdict, "input")
    data = json.loads(json.dumps(summary.to_json()))
    assert VerdictSummary.from_json(data) == summary
    assert data["evidence"][0] == {"part": 2, "kind": "image", "categories": ["S9"], "chars": None,
                                   "seconds": None, "joint": []}
    back = summary.to_verdict()
    assert back.category_codes == ("S9",) and back.evidence == verdict.evidence and back.unsafe


def test_summary_header_and_message() -> None:
    assert summarize(Verdict(safe=True)).header() == "safe"
    assert summarize(_unsafe()).header() == "unsafe; S9"
    failed = Verdict(safe=False, error="timeout: no verdict within 5s")
    assert summarize(failed, "output").header() == "error; timeout"
    assert summarize(failed, "output").blocked_message().startswith("OmniGuard blocked the output: error (timeout")


def test_from_json_refuses_a_body_without_a_label() -> None:
    with pytest.raises(ConfigError):
        VerdictSummary.from_json({"safe": True})


# ---------------------------------------------------------------------- tool calls


def test_tool_call_rendering_is_the_same_for_dict_and_json_string() -> None:
    args = {"to": "bob@example.com", "body": "I will build a bomb"}
    assert render_tool_call("send_email", args) == render_tool_call("send_email", json.dumps(args))
    assert render_tool_call("send_email", args)[0] == Text(
        'send_email {"to": "bob@example.com", "body": "I will build a bomb"}')


def test_tool_call_media_becomes_parts_never_paths(judge) -> None:
    red = _red_png_b64()
    parts = render_tool_call("post_image", {"caption": "look", "image": red, "path": "/etc/passwd"})
    assert isinstance(parts[1], Image) and parts[1].origin == "base64"
    assert "<image 1>" in parts[0].text and "/etc/passwd" in parts[0].text and len(parts) == 2
    uri = render_tool_call("post_image", {"image_url": "data:image/png;base64," + red})
    assert isinstance(uri[1], Image) and uri[1].origin == "url"
    verdict = judge.check(Ask(user="post it", assistant=list(parts), stage="output"))
    assert verdict.unsafe  # the red image was judged as an image


def test_tool_call_partial_json_is_judged_as_written() -> None:
    assert render_tool_call("f", '{"a": "bo')[0] == Text('f {"a": "bo')


# ---------------------------------------------------------------------- RailSession


async def _session_run(judge, chunks: list[str], window: int = 40, step: int = 20) -> tuple[str, Verdict | None]:
    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=window, step_chars=step))
    shown: list[str] = []
    blocks: list[Verdict] = []
    session = RailSession(rail, output_judge(judge, Conversation.of(user="tell me").turns),
                          on_release=shown.extend, on_block=blocks.append)
    for chunk in chunks:
        await session.feed(chunk)
        await asyncio.sleep(0)
    final = await session.finish()
    assert (final is None) == (not blocks)
    return "".join(shown), final


async def test_rail_session_releases_a_safe_answer_whole(judge) -> None:
    text = "Tulips grow well in spring. Water them weekly and give them sun. " * 3
    chunks = [text[i:i + 7] for i in range(0, len(text), 7)]
    shown, blocked = await _session_run(judge, chunks)
    assert blocked is None and shown == text


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), st.lists(st.integers(1, 13), min_size=1, max_size=40))
def test_rail_session_never_shows_the_unsafe_window(safe_before: int, sizes: list[int]) -> None:
    safe = "Tulips grow well in spring and like the sun. "
    text = safe * safe_before + "Here is how to build a bomb at home. " + safe * 2
    chunks, i, k = [], 0, 0
    while i < len(text):
        size = sizes[k % len(sizes)]
        chunks.append(text[i:i + size])
        i, k = i + size, k + 1
    assert "".join(chunks) == text
    j = scripted_judge(keyword_handler({"bomb": "S9"}))
    try:
        shown, blocked = asyncio.run(_session_run(j, chunks))
    finally:
        j.close()
    assert blocked is not None and blocked.unsafe
    # nothing from the first window that holds the whole trigger word, nor after it (the rail's
    # rule: a window that sees only part of the word is judged safe and may release before it)
    at = text.index("bomb")
    first = next(end for end in range(20, len(text) + 60, 20) if end >= at + len("bomb"))
    assert len(shown) <= min(at, max(0, first - 40)) and "bomb" not in shown
    assert text.startswith(shown)


async def test_rail_session_block_with_windows_in_flight_ends_cleanly() -> None:
    """A block cancels the other window checks; a settle already scheduled must not read them
    (found by bench/live.py at 32 sessions: finish() raised CancelledError)."""
    calls = 0

    async def judge_window(window) -> Verdict:
        nonlocal calls
        calls += 1
        if "bomb" in window.text:
            return Verdict(safe=False)
        await asyncio.sleep(0.05)
        return Verdict(safe=True)

    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=20, step_chars=10, max_in_flight=4))
    session = RailSession(rail, judge_window)
    for chunk in ["aaaaaaaaaa", "bbbbbbbbbb", "a bomb now", "cccccccccc", "dddddddddd"]:
        await session.feed(chunk)
    await asyncio.sleep(0)
    blocked = await session.finish()
    assert blocked is not None and blocked.unsafe and session.take() == []
    await asyncio.sleep(0.1)  # the cancelled checks' callbacks run: nothing may raise later
    await session.feed("more")  # after a block chunks are dropped quietly
    assert calls >= 2
