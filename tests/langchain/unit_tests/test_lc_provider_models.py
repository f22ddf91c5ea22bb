"""The agent middleware with every model an agent can be given: a real ``ChatOpenAI`` streaming
from a fake OpenAI server on loopback, bound (``.bind(stop=...)``, ``.bind_tools``), configured
(``.with_config``) and with fallbacks; a provider that streams protocol events natively. Nothing
unjudged in ``messages`` mode, sync or async; the model object, its runs and its state stay the
user's."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langchain_omniguard import OmniGuardMiddleware
from langchain_openai import ChatOpenAI

from tests.support.lc_stream_models import ScriptedChatModel
from tests.support.lc_upstream import REPLIES, serve_upstream

UNSAFE_ASK = "long unsafe answer"
SAFE_ASK = "long safe answer"
REFUSAL = "Sorry: {categories}."


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_upstream() as url:
        yield url


def chat(url: str, **kwargs: Any) -> ChatOpenAI:
    kwargs.setdefault("model", "upstream-llm")
    # a fresh async client per model: each async test runs on its own event loop
    return ChatOpenAI(base_url=url, api_key="sk-test", max_retries=0,  # type: ignore[arg-type]
                      http_async_client=openai.DefaultAsyncHttpxClient(), **kwargs)


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"All about {topic}."


def shapes(url: str) -> dict[str, Any]:
    """Every way an agent can be handed a model."""
    return {
        "plain": chat(url),
        "bound": chat(url).bind(stop=["ZZZ"]),
        "configured": chat(url).with_config(tags=["mine"]),
        "fallbacks": chat(url, model="missing-model").with_fallbacks([chat(url)]),
    }


async def streamed(agent: Any, ask: str, use_async: bool, callbacks: list[Any] | None = None) -> list[Any]:
    question = {"messages": [HumanMessage(ask)]}
    config: Any = {"callbacks": callbacks or []}
    if use_async:
        return [item async for item in agent.astream(question, config, stream_mode=["messages", "values"])]
    return list(agent.stream(question, config, stream_mode=["messages", "values"]))


def shown_text(items: list[Any]) -> str:
    return "".join(str(p[0].content) for mode, p in items if mode == "messages" and isinstance(p[0], AIMessageChunk))


@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
@pytest.mark.parametrize("shape", ["plain", "bound", "configured", "fallbacks"])
async def test_a_provider_model_in_any_shape_never_streams_the_unsafe_answer(judge, upstream, shape, use_async):
    guard = OmniGuardMiddleware(judge=judge, violation_message=REFUSAL, step_chars=50, window_chars=200)
    agent = create_agent(shapes(upstream)[shape], [lookup], middleware=[guard])
    items = await streamed(agent, UNSAFE_ASK, use_async)
    shown = shown_text(items)
    assert "bomb" not in str(items)
    assert shown.endswith("\n\nSorry: Indiscriminate Weapons.")  # a new paragraph after the text shown
    assert REPLIES[UNSAFE_ASK].startswith(shown[: -len("\n\nSorry: Indiscriminate Weapons.")])
    final = [p for mode, p in items if mode == "values"][-1]["messages"][-1]
    assert final.content == "Sorry: Indiscriminate Weapons." and final.response_metadata["omniguard"]["safe"] is False


@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
@pytest.mark.parametrize("shape", ["plain", "bound", "fallbacks"])
async def test_a_safe_provider_answer_streams_whole_and_is_marked_with_the_rails_verdict(judge, upstream, shape,
                                                                                        use_async):
    agent = create_agent(shapes(upstream)[shape], [lookup], middleware=[OmniGuardMiddleware(judge=judge)])
    items = await streamed(agent, SAFE_ASK, use_async)
    assert shown_text(items) == REPLIES[SAFE_ASK]
    final = [p for mode, p in items if mode == "values"][-1]["messages"][-1]
    mark = final.response_metadata["omniguard"]
    assert final.content == REPLIES[SAFE_ASK] and mark["safe"] is True and mark["stage"] == "output"
    assert mark["latency_ms"] > 0  # the rail's own final verdict, not a made-up one


class RunNames(BaseCallbackHandler):
    def __init__(self) -> None:
        self.names: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.names.append(kwargs.get("name") or serialized.get("name") or serialized["id"][-1])


def test_the_users_model_object_runs_as_itself(judge, upstream):
    model = chat(upstream, temperature=0.3)
    before = model.model_dump()
    names = RunNames()
    agent = create_agent(model, [], middleware=[OmniGuardMiddleware(judge=judge)])
    agent.invoke({"messages": [HumanMessage(SAFE_ASK)]}, {"callbacks": [names]})
    assert names.names == ["ChatOpenAI"]  # traced runs keep the model's own name
    assert type(model) is ChatOpenAI and model.model_dump() == before
    fake = FakeListChatModel(responses=["one", "two"])
    create_agent(fake, [], middleware=[OmniGuardMiddleware(judge=judge)]).invoke({"messages": [HumanMessage("hi")]})
    assert pickle.loads(pickle.dumps(fake)).responses == ["one", "two"] and fake.i == 1  # the user's state, advanced


class NativeEvents(ScriptedChatModel):
    """A provider that streams protocol events itself (``_stream_chat_model_events``), the way
    ``stream_events(version="v3")`` reads a model with native support."""

    def _stream_chat_model_events(self, messages: Any, stop: Any = None, run_manager: Any = None,
                                  **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield {"event": "message-start", "role": "ai", "id": "native-1"}
        yield {"event": "content-block-start", "index": 0, "content": {"type": "text", "text": ""}}
        text = ""
        for piece in self._next(messages):
            text += str(piece)
            yield {"event": "content-block-delta", "index": 0, "delta": {"type": "text-delta", "text": str(piece)}}
        yield {"event": "content-block-finish", "index": 0, "content": {"type": "text", "text": text}}
        yield {"event": "message-finish"}


def test_a_provider_streaming_native_protocol_events_cannot_bypass_the_rail(judge):
    answer = "Here is a friendly answer about gardening. " * 5 + "Now here is how to build a bomb at home. " * 2
    model = NativeEvents(replies=[[answer[i:i + 9] for i in range(0, len(answer), 9)]])
    agent = create_agent(model, [], middleware=[OmniGuardMiddleware(judge=judge, violation_message=REFUSAL,
                                                                    step_chars=50, window_chars=200)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = list(agent.stream_events({"messages": [HumanMessage("Tell me")]}, version="v3"))
    assert "bomb" not in str(events)
    assert "Sorry: Indiscriminate Weapons." in str(events)


def test_a_block_stands_a_fallback_model_is_not_tried(judge):
    answer = "Sure. Now here is how to build a bomb at home, step by step. " * 2
    first = ScriptedChatModel(replies=[[answer[i:i + 9] for i in range(0, len(answer), 9)]])
    fallback = ScriptedChatModel(replies=[["A different answer."]])
    agent = create_agent(first.with_fallbacks([fallback]), [], middleware=[
        OmniGuardMiddleware(judge=judge, violation_message=REFUSAL)])
    items = list(agent.stream({"messages": [HumanMessage("Tell me")]}, stream_mode=["messages", "values"]))
    assert "bomb" not in str(items) and fallback.seen == []
    assert [p for mode, p in items if mode == "values"][-1]["messages"][-1].content == "Sorry: Indiscriminate Weapons."
