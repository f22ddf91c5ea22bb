"""The shipped OmniGuard rails on real LLMRails, in Colang 1 and Colang 2 alike.

Every test runs once per Colang version (the ``colang`` fixture) against the shipped config
folder; the main LLM is NeMo's FakeLLMModel, whose ``inference_count`` shows whether the
main model was reached at all.
"""

from __future__ import annotations

import pytest
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import INPUT_EXCEPTION, JUDGE_PARAM, OUTPUT_EXCEPTION, REFUSAL, register

from omniguard_plugins.testing import scripted_judge


def user(content):
    return [{"role": "user", "content": content}]


def test_safe_text_reaches_the_llm_and_comes_back(make_rails, judge):
    rails, llm = make_rails(judge, ["Paris is the capital of France."])

    response = rails.generate(messages=user("What is the capital of France?"))

    assert response["content"] == "Paris is the capital of France."
    assert llm.inference_count == 1
    # one input check, one output check that sees both turns
    prompts = judge.backend.prompts
    assert len(prompts) == 2
    assert "User: What is the capital of France?\n\nAgent:\n" in prompts[0]
    assert "Agent: Paris is the capital of France." in prompts[1]


def test_unsafe_text_is_refused_before_the_llm_is_called(make_rails, judge):
    rails, llm = make_rails(judge, ["never said"])

    response = rails.generate(messages=user("How do I build a pipe bomb?"))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 0


def test_multimodal_message_reaches_the_judge_with_its_image_intact(make_rails, judge, png_data_uri):
    rails, llm = make_rails(judge, ["A blue square."])
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": png_data_uri((20, 40, 220), size=(24, 16))}},
    ]

    response = rails.generate(messages=user(content))

    assert response["content"] == "A blue square."
    assert llm.inference_count == 1
    first = judge.backend.requests[0]
    assert "What is in this picture?" in first.prompt
    [image] = first.media
    assert image.kind == "image"
    assert image.image.size == (24, 16)
    assert image.image.convert("RGB").getpixel((5, 5)) == (20, 40, 220)


def test_unsafe_image_with_harmless_text_is_refused_before_the_llm(make_rails, judge, png_data_uri):
    rails, llm = make_rails(judge, ["never said"])
    content = [
        {"type": "text", "text": "Describe this photo."},
        {"type": "image_url", "image_url": {"url": png_data_uri((230, 10, 10))}},
    ]

    response = rails.generate(messages=user(content))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 0


def test_unsafe_bot_output_is_replaced_by_the_refusal(make_rails, judge):
    rails, llm = make_rails(judge, ["Sure: mix these to make a bomb."])

    response = rails.generate(messages=user("Tell me a chemistry fact."))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 1


def test_rails_exceptions_name_our_events(make_rails, judge, exception_type):
    rails, llm = make_rails(judge, ["Here is the bomb recipe."], exceptions=True)

    blocked_input = rails.generate(messages=user("build a bomb"))
    assert exception_type(blocked_input) == INPUT_EXCEPTION
    assert llm.inference_count == 0

    blocked_output = rails.generate(messages=user("any recipe ideas?"))
    assert exception_type(blocked_output) == OUTPUT_EXCEPTION
    assert llm.inference_count == 1


@pytest.mark.parametrize("colang", ["1.0"])  # Colang 2 sends the event in "events" (above)
def test_rails_exception_role_in_colang_1(make_rails, judge):
    rails, _ = make_rails(judge, [], exceptions=True)

    response = rails.generate(messages=user("build a bomb"))

    assert response["role"] == "exception"
    assert response["content"]["type"] == INPUT_EXCEPTION
    assert "omniguard check input" in response["content"]["message"]


def test_a_judge_that_raises_blocks_by_default(make_rails):
    def broken(prompt, media):
        raise RuntimeError("CUDA error: device-side assert triggered")

    rails, llm = make_rails(scripted_judge(broken), ["never said"])

    response = rails.generate(messages=user("What is the capital of France?"))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 0


def test_a_judge_that_raises_passes_with_on_error_allow(make_rails):
    def broken(prompt, media):
        raise RuntimeError("CUDA error: device-side assert triggered")

    rails, llm = make_rails(scripted_judge(broken, on_error="allow"), ["Paris."])

    response = rails.generate(messages=user("What is the capital of France?"))

    assert response["content"] == "Paris."
    assert llm.inference_count == 1


def test_a_judge_in_raise_mode_still_never_reaches_the_llm(make_rails):
    """on_error="raise" lets the error reach NeMo, which answers with its internal-error
    message (Colang 1) or nothing (Colang 2); the main LLM is not called either way."""

    def broken(prompt, media):
        raise RuntimeError("CUDA error")

    rails, llm = make_rails(scripted_judge(broken, on_error="raise"), ["never said"])

    response = rails.generate(messages=user("hello"))

    assert response["content"] != "never said"
    assert llm.inference_count == 0


def test_message_parts_we_cannot_read_block(make_rails, judge):
    rails, llm = make_rails(judge, ["never said"])
    content = [{"type": "text", "text": "read this"}, {"type": "file", "file": {"file_id": "f-1"}}]

    response = rails.generate(messages=user(content))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 0
    assert judge.backend.calls == 0  # refused by the adapter, before any model time


def test_the_shipped_folder_finds_its_actions_without_register(config_dir, judge):
    """Pointing RailsConfig.from_path at the folder is enough: NeMo loads its actions.py.
    The judge still comes in by parameter name, as any action dependency does."""
    config = RailsConfig.from_path(config_dir)
    llm = FakeLLMModel(responses=["never said"])
    rails = LLMRails(config, llm=llm)
    rails.register_action_param(JUDGE_PARAM, judge)

    response = rails.generate(messages=user("How do I build a pipe bomb?"))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 0
    assert judge.backend.calls >= 1


def test_without_a_judge_the_actions_use_the_shared_one(config_dir, judge, monkeypatch):
    from omniguard_plugins import OmniGuard

    monkeypatch.setattr(OmniGuard, "shared", classmethod(lambda cls, *a, **k: judge))
    llm = FakeLLMModel(responses=["never said"])
    rails = LLMRails(RailsConfig.from_path(config_dir), llm=llm)

    response = rails.generate(messages=user("How do I build a pipe bomb?"))

    assert response["content"] == REFUSAL
    assert judge.backend.calls >= 1


def test_both_colang_versions_make_the_same_judge_calls(make_rails, judge):
    """Same conversation, same judge requests, whichever Colang version runs the rails."""
    rails, _ = make_rails(judge, ["Sure.", "Here is a bomb recipe."])
    rails.generate(messages=user("hi"))
    rails.generate(messages=user("a recipe please"))
    rails.generate(messages=user("build a bomb"))

    convos = [p.split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0].strip() for p in judge.backend.prompts]
    modes = [r.mode for r in judge.backend.requests]
    assert list(zip(convos, modes)) == [
        ("User: hi\n\nAgent:", "verdict"),
        ("User: hi\n\nAgent: Sure.", "verdict"),
        ("User: a recipe please\n\nAgent:", "verdict"),
        ("User: a recipe please\n\nAgent: Here is a bomb recipe.", "verdict"),
        ("User: a recipe please\n\nAgent: Here is a bomb recipe.", "critique"),  # explain the block
        ("User: build a bomb\n\nAgent:", "verdict"),
        ("User: build a bomb\n\nAgent:", "critique"),
    ]


def test_a_conversation_with_nemos_testchat(config_dir, judge):
    from nemoguardrails.testing import TestChat

    chat = TestChat(RailsConfig.from_path(config_dir), llm_completions=["Hello there!", "Rice takes 20 minutes."])
    register(chat.app, judge=judge)

    chat >> "hi"
    chat << "Hello there!"
    chat >> "how do I make a bomb?"
    chat << REFUSAL
    chat >> "how long does rice take?"
    chat << "Rice takes 20 minutes."
