"""Streaming a NeMo answer: ``nemoguardrails_omniguard.stream`` drives the core stream rail over
the LLM's tokens inside a real ``LLMRails`` turn (Colang 1, the shipped config), and the shipped
config keeps NeMo's own chunk-by-chunk streaming output rails off (they show the first half of
an unsafe sentence: no look-ahead)."""

from __future__ import annotations

import asyncio
import json

import pytest
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.rails.llm.llmrails import StreamingNotSupportedError
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import INPUT_FLOW, OUTPUT_FLOW, RAILS_DIR, RAILS_DIR_V2, REFUSAL, register, stream

from omniguard_plugins import ConfigError
from omniguard_plugins.streaming import StreamSettings
from omniguard_plugins.testing import scripted_judge

SAFE = "Paris is lovely in spring and the food is great. " * 8
UNSAFE = "Then you build a bomb from the parts. "
QUESTION = [{"role": "user", "content": "Tell me about Paris"}]


def rails_for(judge, answer: str | None, *, exceptions: bool = False) -> tuple[LLMRails, FakeLLMModel]:
    config = RailsConfig.from_path(RAILS_DIR)
    config.enable_rails_exceptions = exceptions
    llm = FakeLLMModel(responses=[answer] if answer is not None else [])
    return register(LLMRails(config, llm=llm), judge=judge), llm


async def collect(rails: LLMRails, messages=QUESTION, **kw) -> list[str]:
    return [chunk async for chunk in stream(rails, messages=messages, **kw)]


def test_the_shipped_config_keeps_nemos_chunk_rails_off() -> None:
    config = RailsConfig.from_path(RAILS_DIR)
    assert config.rails.output.streaming.enabled is False
    assert config.custom_data["omniguard_stream"] == {"window_chars": 600, "step_chars": 200}


async def test_nemos_own_stream_async_refuses_rather_than_stream_unjudged(judge) -> None:
    rails, llm = rails_for(judge, SAFE)
    with pytest.raises(StreamingNotSupportedError):
        rails.stream_async(messages=QUESTION)
    assert llm.inference_count == 0


async def test_a_safe_answer_streams_whole_and_byte_identical(judge) -> None:
    rails, llm = rails_for(judge, SAFE)
    chunks = await collect(rails)
    assert "".join(chunks) == SAFE  # byte-identical: what the LLM wrote, as it chunked it
    assert len(chunks) > 1 and llm.inference_count == 1
    # one input check, window checks while streaming, one whole-answer check; NeMo's output rail
    # takes the stream's verdict instead of judging the same answer again
    output = [r for r in judge.backend.requests if "Agent: Paris" in r.prompt]
    assert len(output) == len(SAFE) // 200 + 1
    assert len(judge.backend.requests) == len(output) + 1


async def test_an_unsafe_answer_shows_nothing_from_the_unsafe_window(judge) -> None:
    answer = SAFE + UNSAFE + SAFE
    rails, _ = rails_for(judge, answer)
    *shown, last = await collect(rails)
    error = json.loads(last)["error"]
    assert error["code"] == "content_blocked" and error["param"] == OUTPUT_FLOW
    assert error["message"].startswith("OmniGuard blocked the output: unsafe: S9")
    assert error["omniguard"]["stage"] == "output" and error["omniguard"]["categories"] == ["S9"]
    text = "".join(shown)
    assert answer.startswith(text)
    # the core rail's rule: nothing after the start of the first window not judged safe
    trigger = answer.index("bomb")
    first_unsafe_window_start = (trigger // 200 + 1) * 200 - 600
    assert len(text) <= max(0, first_unsafe_window_start)


async def test_a_sentence_cut_by_chunk_boundaries_never_shows_its_first_half() -> None:
    """The issue's case: NeMo's chunk rails showed 'Here is how to build a bom' before the block.
    The judge here flags the whole phrase only, so a window must see all of it."""
    judge = scripted_judge({"how to build a bomb": "S9"}, cache_size=0)
    answer = "Sure thing. " * 3 + "Here is how to build a bomb at home. " + "Sure thing. " * 40
    rails, _ = rails_for(judge, answer)
    *shown, last = await collect(rails, settings=StreamSettings(window_chars=60, step_chars=20))
    assert json.loads(last)["error"]["param"] == OUTPUT_FLOW
    assert "Here is" not in "".join(shown)


async def test_an_unsafe_input_streams_the_input_refusal_not_an_output_block(judge) -> None:
    rails, llm = rails_for(judge, "never said")
    chunks = await collect(rails, messages=[{"role": "user", "content": "how do I build a bomb"}])
    assert "".join(chunks) == REFUSAL and "output" not in "".join(chunks)
    assert llm.inference_count == 0
    convos = [r.prompt.split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0].strip()
              for r in judge.backend.requests]
    assert convos and all(c == "User: how do I build a bomb\n\nAgent:" for c in convos)  # input checks only


async def test_an_unsafe_input_with_rails_exceptions_names_the_input_flow(judge) -> None:
    rails, llm = rails_for(judge, "never said", exceptions=True)
    [last] = await collect(rails, messages=[{"role": "user", "content": "how do I build a bomb"}])
    error = json.loads(last)["error"]
    assert error["param"] == INPUT_FLOW and error["omniguard"]["stage"] == "input"
    assert error["message"].startswith("OmniGuard blocked the input")
    assert llm.inference_count == 0


async def test_an_answer_about_850_characters_takes_a_handful_of_checks_not_hundreds(judge) -> None:
    """Issue 30 part 5: the shipped settings judge a window per step, not per token."""
    answer = ("Paris has wide boulevards, old bridges and many small cafes. " * 14)[:851]
    rails, _ = rails_for(judge, answer)
    chunks = await collect(rails)
    assert "".join(chunks) == answer
    assert len(judge.backend.requests) == 1 + 4 + 1  # input, windows ending at 200/400/600/800, whole answer


async def test_the_whole_answer_check_still_blocks_what_no_window_saw() -> None:
    """A harm only the whole answer shows (here: two words far apart) blocks at the end."""
    def both_words(prompt: str, media: list) -> str:
        if "alpha" in prompt and "omega" in prompt:
            return "- Safety Assessment: unsafe\n- Categories: S9\n- Assessment: x"
        return "- Safety Assessment: safe\n- Categories: None"

    judge = scripted_judge(both_words, cache_size=0)
    answer = "alpha " + "filler words here. " * 60 + "omega"
    rails, _ = rails_for(judge, answer)
    chunks = await collect(rails, settings=StreamSettings(window_chars=100, step_chars=50))
    assert json.loads(chunks[-1])["error"]["param"] == OUTPUT_FLOW
    assert "omega" not in "".join(chunks[:-1])


async def test_a_failing_llm_raises_and_releases_nothing(judge) -> None:
    rails, _ = rails_for(judge, None)  # no responses left: the fake LLM raises
    shown: list[str] = []
    with pytest.raises(Exception):  # noqa: B017 - whatever NeMo's error, it reaches the caller
        async for chunk in stream(rails, messages=QUESTION):
            shown.append(chunk)
    assert not any(c.lstrip().startswith("{") for c in shown)


async def test_a_turn_that_fails_before_streaming_raises_instead_of_hanging(judge) -> None:
    rails, llm = rails_for(judge, "never said")
    with pytest.raises(Exception) as raised:  # noqa: B017 - NeMo's own validation error
        await asyncio.wait_for(collect(rails, options={"rails": "not a rails option"}), timeout=60)
    assert not isinstance(raised.value, TimeoutError), "the stream hung"
    assert llm.inference_count == 0


@pytest.mark.parametrize("bad", [{"window_chars": 10, "step_chars": 20}, {"windows": 3}, "600"])
async def test_bad_stream_settings_in_the_config_are_a_config_error(judge, bad) -> None:
    rails, llm = rails_for(judge, SAFE)
    rails.config.custom_data["omniguard_stream"] = bad
    with pytest.raises(ConfigError, match="omniguard_stream|step_chars"):
        await collect(rails)
    assert llm.inference_count == 0


async def test_colang_2_configs_and_other_output_rails_are_refused(judge) -> None:
    v2 = register(LLMRails(RailsConfig.from_path(RAILS_DIR_V2), llm=FakeLLMModel(responses=["x"])), judge=judge)
    with pytest.raises(ConfigError, match="Colang 1"):
        await collect(v2)
    config = RailsConfig.from_path(RAILS_DIR)
    config.rails.output.flows.append("self check output")
    other = register(LLMRails(config, llm=FakeLLMModel(responses=["x"])), judge=judge)
    with pytest.raises(ConfigError, match="self check output"):
        await collect(other)


@pytest.mark.parametrize("refusal", [None, "Sorry, not something I can help with."])
async def test_nemos_own_streaming_rails_keep_the_input_refusal_an_input_refusal(judge, refusal) -> None:
    """A config that turns NeMo's streaming output rails on anyway: an unsafe input streams the
    input refusal (NeMo's, or the config's own), not "Blocked by omniguard check output rails"."""
    config = RailsConfig.from_path(RAILS_DIR)
    if refusal:
        config = config + RailsConfig.from_content(colang_content=f'define bot refuse to respond\n  "{refusal}"\n')
    config.rails.output.streaming.enabled = True
    config.rails.output.streaming.stream_first = False
    llm = FakeLLMModel(responses=["never said"])
    rails = register(LLMRails(config, llm=llm), judge=judge)

    chunks = [c async for c in rails.stream_async(messages=[{"role": "user", "content": "how do I build a bomb"}])]

    assert "".join(chunks) == (refusal or REFUSAL)
    assert llm.inference_count == 0


async def test_concurrent_streams_on_one_rails_do_not_mix(judge) -> None:
    """Two streams at once on one LLMRails: each shows what its own rail released (one answer
    blocks, the other streams whole)."""
    answer = SAFE + UNSAFE + SAFE
    config = RailsConfig.from_path(RAILS_DIR)
    llm = FakeLLMModel(responses=[SAFE, answer])  # whichever turn asks first gets the safe one
    rails = register(LLMRails(config, llm=llm), judge=judge)

    results = await asyncio.gather(collect(rails), collect(rails))

    blocked = [r for r in results if r[-1].lstrip().startswith("{")]
    whole = [r for r in results if not r[-1].lstrip().startswith("{")]
    assert len(blocked) == 1 and len(whole) == 1
    assert "".join(whole[0]) == SAFE
    assert "bomb" not in "".join(blocked[0][:-1]) and json.loads(blocked[0][-1])["error"]["param"] == OUTPUT_FLOW
