"""Property tests of the LangChain doors (guard(chain) and the agent middleware) on the core
stream rail: random answers with the trigger at a random place, random chunkings and window
settings, sync and async; scripted-judge speed, so thousands of cases run in seconds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_omniguard import OmniGuardMiddleware, guard
from lc_stream_models import ScriptedChatModel, StreamChecks
from omniguard_plugins.testing import scripted_judge
from tests.stream_helpers import answers, check_shown

REFUSAL = "BLOCKED"
FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def judge():
    og = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    yield og
    og.close()


@FAST
@given(case=answers(), use_async=st.booleans())
def test_guard_chain_stream(judge, case, use_async) -> None:
    answer, at, chunks, cfg = case
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | ScriptedChatModel(replies=[chunks]) | StrOutputParser()
    safe = guard(chain, judge=judge, window_chars=cfg.window_chars, step_chars=cfg.step_chars,
                 max_unjudged_chars=cfg.max_unjudged_chars, max_in_flight=cfg.max_in_flight,
                 exit_behavior="end", violation_message=REFUSAL)
    events = StreamChecks()
    config: Any = {"callbacks": [events]}

    async def collect() -> list[str]:
        return [c async for c in safe.astream({"question": "Q?"}, config)]

    out = asyncio.run(collect()) if use_async else list(safe.stream({"question": "Q?"}, config))
    assert all(isinstance(c, str) for c in out)  # the refusal too: "".join works
    blocked = bool(out) and out[-1] == REFUSAL and at is not None
    shown = "".join(out[:-1] if blocked else out)
    check_shown(answer, at, shown, blocked, cfg)
    if at is None and answer.strip():
        assert events.kinds.count("final") == 1  # the whole output was judged once, at the end


@pytest.fixture(scope="module")
def agent_parts(judge):
    model = ScriptedChatModel(replies=[])
    guard_mw = OmniGuardMiddleware(judge=judge, violation_message=REFUSAL)
    return create_agent(model, [], middleware=[guard_mw]), model, guard_mw


@FAST
@given(case=answers(), use_async=st.booleans())
def test_agent_messages_stream(agent_parts, case, use_async) -> None:
    agent, model, guard_mw = agent_parts
    answer, at, chunks, cfg = case
    model.replies.append(chunks)
    guard_mw.stream_settings = cfg
    events = StreamChecks()
    question = {"messages": [HumanMessage("Q?")]}
    config: Any = {"callbacks": [events]}

    async def collect() -> list[Any]:
        return [item async for item in agent.astream(question, config, stream_mode="messages")]

    items = asyncio.run(collect()) if use_async else list(agent.stream(question, config, stream_mode="messages"))
    texts = [str(m.content) for m, _ in items if isinstance(m, AIMessageChunk)]
    shown = "".join(texts)
    blocked = shown.endswith(REFUSAL) and at is not None
    check_shown(answer, at, shown[: -len(REFUSAL)] if blocked else shown, blocked, cfg)
    if at is None and answer.strip():
        assert events.kinds.count("final") == 1
