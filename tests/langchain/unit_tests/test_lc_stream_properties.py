"""Property tests of the LangChain doors (guard(chain) and the agent middleware) on the core
stream rail: random answers with the trigger at a random place, random chunkings and window
settings, sync and async; scripted-judge speed, so thousands of cases run in seconds."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_omniguard import OmniGuardMiddleware, guard

from omniguard_plugins.testing import scripted_judge
from tests.support.lc_stream_models import ScriptedChatModel, StreamChecks
from tests.support.stream_helpers import TRIGGER, answers, check_shown

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
    check_agent_shown(answer, at, "".join(out), cfg)
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
    check_agent_shown(answer, at, "".join(texts), cfg)
    if at is None and answer.strip():
        assert events.kinds.count("final") == 1


def check_agent_shown(answer: str, at: int | None, shown: str, cfg: Any) -> None:
    """The rail's property, with the door's refusal at the end: after text already shown it starts
    a new paragraph ("...\n\nBLOCKED")."""
    blocked = shown.endswith(REFUSAL) and at is not None
    if blocked:
        shown = shown[: -len(REFUSAL)]
        if shown:
            assert shown.endswith("\n\n")
            shown = shown[:-2]
    check_shown(answer, at, shown, blocked, cfg)


def _event_text(events: list[Any], version: str) -> str:
    """The model's text as each event protocol shows it."""
    if version == "v2":
        return "".join(str(e["data"]["chunk"].content) for e in events if e["event"] == "on_chat_model_stream")
    deltas = [e["params"]["data"][0] for e in events if e["method"] == "messages"]
    return "".join(d["delta"].get("text", "") for d in deltas if d.get("event") == "content-block-delta")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=answers(), version=st.sampled_from(["v2", "v3", "v3-sync"]))
def test_agent_event_streams(agent_parts, case, version) -> None:
    """``astream_events`` v2 and v3 (and v3's sync ``stream_events``): no event carries a
    character of the unsafe sentence or its overlap window; safe answers byte-identical."""
    agent, model, guard_mw = agent_parts
    answer, at, chunks, cfg = case
    model.replies.append(chunks)
    guard_mw.stream_settings = cfg
    question = {"messages": [HumanMessage("Q?")]}

    async def collect() -> list[Any]:
        if version == "v2":
            return [e async for e in agent.astream_events(question, version="v2")]
        return [e async for e in await agent.astream_events(question, version="v3")]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v3 is marked experimental
        events = list(agent.stream_events(question, version="v3")) if version == "v3-sync" else asyncio.run(collect())
    check_agent_shown(answer, at, _event_text(events, version[:2]), cfg)
    if at is not None and not cfg.max_unjudged_chars:  # (that setting shows so much unjudged text by design)
        assert TRIGGER not in str(events)  # not in a token, a finished block, on_chat_model_end or a state
