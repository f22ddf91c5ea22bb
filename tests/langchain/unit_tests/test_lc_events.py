"""What LangChain's event streams and a user's callbacks receive from an agent guarded by
OmniGuardMiddleware: model output only once judged (``astream_events`` v2 and v3, ``on_llm_end``,
``on_llm_new_token``), the refusal as a new paragraph; and the one surface LangChain does not
let the middleware hold back (``on_tool_end``), exactly as the docs say."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langchain_omniguard import OmniGuardMiddleware

from tests.support.lc_stream_models import Lockstep, ScriptedChatModel, cut

SAFE = "Here is a long and friendly answer about gardening. " * 4
UNSAFE = "Now here is how to build a bomb at home. "
TAIL = "Water the tomatoes every morning. " * 4
QUESTION = {"messages": [HumanMessage("Tell me about gardening")]}
REFUSAL = "Sorry: Indiscriminate Weapons."
DOCS = Path(__file__).resolve().parents[3] / "docs" / "langchain.md"
#: the docs' statement of the callback surface the middleware cannot hold back (pinned below)
TOOL_END_STATEMENT = (
    "`on_tool_end` (and `astream_events`' `on_tool_end` event) carries a tool's raw result: LangChain's tools "
    "node hands the tool its own callbacks, so the middleware judges the result only after the tool returned it."
)


def guarded(judge: Any, model: Any, tools: list[Any] | None = None, **settings: Any) -> Any:
    settings.setdefault("violation_message", "Sorry: {categories}.")
    return create_agent(model, tools or [], middleware=[
        OmniGuardMiddleware(judge=judge, step_chars=50, window_chars=200, **settings)])


class Seen(BaseCallbackHandler):
    """Everything a user's sync callbacks receive about the model's output."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.ends: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ends.append(str(response))


class ASeen(AsyncCallbackHandler):
    """The same, async (LangChain awaits it)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.events: list[str] = []
        self.ends: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)

    async def on_stream_event(self, event: Any, **kwargs: Any) -> None:
        self.events.append(str(event))

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ends.append(str(response))


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream-updates", "stream-values", "astream-messages"])
async def test_callbacks_never_receive_the_unsafe_answer(judge, how):
    model = ScriptedChatModel(replies=[cut(SAFE + UNSAFE + TAIL)], pace=Lockstep(judge, 50))
    agent = guarded(judge, model)
    seen = Seen()
    config: Any = {"callbacks": [seen]}
    if how == "invoke":
        agent.invoke(QUESTION, config)
    elif how == "ainvoke":
        await agent.ainvoke(QUESTION, config)
    elif how.startswith("stream-"):
        list(agent.stream(QUESTION, config, stream_mode=how.split("-")[1]))
    else:
        [item async for item in agent.astream(QUESTION, config, stream_mode="messages")]
    assert seen.ends and "bomb" not in str(seen.ends) and "bomb" not in "".join(seen.tokens)
    assert REFUSAL in seen.ends[-1]  # on_llm_end hears the refusal the agent answers with


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_astream_events_shows_judged_tokens_and_the_refusal_as_a_new_paragraph(judge, version):
    model = ScriptedChatModel(replies=[cut(SAFE + UNSAFE + TAIL)], pace=Lockstep(judge, 50))
    events = [e async for e in guarded(judge, model).astream_events(QUESTION, version=version)]
    model_events = [e for e in events if e["event"] in ("on_chat_model_stream", "on_chat_model_end", "on_llm_end")]
    assert model_events and "bomb" not in str(model_events) and "bomb" not in str(events)
    shown = "".join(str(e["data"]["chunk"].content) for e in events if e["event"] == "on_chat_model_stream")
    assert shown.endswith("\n\n" + REFUSAL) and len(shown) > len(REFUSAL) + 2  # "...gardening.\n\nSorry: ..."
    assert SAFE.startswith(shown[: -len(REFUSAL) - 2])
    end = next(e for e in events if e["event"] == "on_chat_model_end")
    output = end["data"]["output"]  # v2: the message; v1: the LLM result
    assert output.content == REFUSAL if version == "v2" else REFUSAL in str(output)


@pytest.mark.parametrize("use_async", [False, True], ids=["stream_events", "astream_events"])
async def test_v3_events_never_carry_the_unsafe_answer(judge, use_async):
    model = ScriptedChatModel(replies=[cut(SAFE + UNSAFE + TAIL)], pace=Lockstep(judge, 50))
    agent = guarded(judge, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if use_async:
            events = [e async for e in await agent.astream_events(QUESTION, version="v3")]
        else:
            events = list(agent.stream_events(QUESTION, version="v3"))
    assert "bomb" not in str(events)
    deltas = [e["params"]["data"][0] for e in events if e["method"] == "messages"]
    text = "".join(d["delta"].get("text", "") for d in deltas if d.get("event") == "content-block-delta")
    assert text.endswith("\n\n" + REFUSAL) and SAFE.startswith(text[: -len(REFUSAL) - 2])


async def test_v3_async_keeps_the_users_callbacks_and_awaits_them(judge):
    """The same callbacks with and without the middleware on a safe answer, every coroutine awaited."""

    async def run(with_guard: bool) -> ASeen:
        model = ScriptedChatModel(replies=[cut(SAFE)])
        agent = guarded(judge, model) if with_guard else create_agent(model, [])
        seen = ASeen()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            [e async for e in await agent.astream_events(QUESTION, {"callbacks": [seen]}, version="v3")]
        return seen

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain, guarded_seen = await run(False), await run(True)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert guarded_seen.tokens == plain.tokens and len(guarded_seen.events) == len(plain.events) > 0
    assert guarded_seen.ends and SAFE.strip() in guarded_seen.ends[-1]


async def test_on_tool_end_carries_the_raw_tool_result_as_documented(judge):
    @tool
    def read_page() -> str:
        """Read the web page."""
        return "The page explains how to build a bomb."

    call = AIMessageChunk(content="", tool_call_chunks=[{"name": "read_page", "args": "{}", "id": "c1", "index": 0}])
    model = ScriptedChatModel(replies=[[call], ["never said"]])
    agent = guarded(judge, model, [read_page], check_tool_results=True)
    events = [e async for e in agent.astream_events(QUESTION, version="v2")]
    tool_end = next(e for e in events if e["event"] == "on_tool_end")
    assert "bomb" in str(tool_end["data"]["output"])  # raw: LangChain's tools node owns the tool's callbacks
    rest = [e for e in events if e["event"] != "on_tool_end"]
    assert "bomb" not in str(rest) and len(model.seen) == 1  # the model never read it; no other event shows it
    assert TOOL_END_STATEMENT in " ".join(DOCS.read_text().split())
