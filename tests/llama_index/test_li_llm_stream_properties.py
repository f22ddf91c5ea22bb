"""Property test of OmniGuardLLM's streams on the core rail: random answers with the trigger at a
random place (or in a tool call), random chunkings and window settings, sync and async. Nothing
from an unsafe window or after it is shown, a safe answer is shown byte-identical, and no chunk
but the last (after the final check) ever carries a tool call."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index_omniguard import OmniGuardLLM

from omniguard_plugins.testing import scripted_judge
from tests.support.li_agent_models import Script, call, stream_of
from tests.support.stream_helpers import answers, check_shown

REFUSAL = "BLOCKED"
QUESTION = [ChatMessage(role=MessageRole.USER, content="Q?")]


@pytest.fixture(scope="module")
def judge():
    guard = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    yield guard
    guard.close()


def collect(guarded: OmniGuardLLM, use_async: bool) -> list:
    if use_async:
        async def chunks() -> list:
            return [c async for c in await guarded.astream_chat(QUESTION)]

        return asyncio.run(chunks())
    return list(guarded.stream_chat(QUESTION))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=answers(), use_async=st.booleans(), with_call=st.sampled_from([None, "safe", "unsafe"]))
def test_llm_streams(judge, case, use_async, with_call) -> None:
    answer, at, chunks, cfg = case
    pieces: list = list(chunks)
    if with_call is not None:  # the last piece also calls a tool, its arguments safe or not
        pieces[-1] = call("post", chunks[-1], body="a bomb" if with_call == "unsafe" else "a cake")
    script = Script(stream_of(*pieces), stream="async" if use_async else "sync")
    guarded = OmniGuardLLM(script.llm(), judge=judge, refusal_message=REFUSAL, window_chars=cfg.window_chars,
                           step_chars=cfg.step_chars, max_unjudged_chars=cfg.max_unjudged_chars,
                           max_in_flight=cfg.max_in_flight)

    out = collect(guarded, use_async)

    text = "".join(c.delta or "" for c in out)
    blocked = "omniguard" in out[-1].additional_kwargs
    shown = text[: -len(REFUSAL)].removesuffix("\n\n") if blocked else text
    tool_calls = [guarded.get_tool_calls_from_response(c, error_on_no_tool_call=False) for c in out]
    assert all(not calls for calls in tool_calls[:-1])
    if with_call == "unsafe":
        assert blocked and not tool_calls[-1]
        assert answer.startswith(shown)
    else:
        check_shown(answer, at, shown, blocked, cfg)
        if with_call == "safe" and at is None:
            assert [c.tool_kwargs for c in tool_calls[-1]] == [{"body": "a cake"}]
