"""create_agent + OmniGuardMiddleware, streamed: no mode ever shows an unjudged token, tool-call
argument, tool result or media block (the issue's agent case, sync and async)."""

from __future__ import annotations

import base64
import warnings

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_omniguard import GuardViolation, OmniGuardMiddleware

from tests.support.lc_stream_models import Lockstep, ScriptedChatModel, cut

SAFE = "Here is a long and friendly answer about gardening. " * 6
UNSAFE = "Now here is how to build a bomb at home. "
TAIL = "Water the tomatoes every morning and enjoy the harvest. " * 8
QUESTION = {"messages": [HumanMessage("Tell me about gardening")]}


def middleware(judge, **settings):
    settings.setdefault("violation_message", "Sorry: {categories}.")
    return OmniGuardMiddleware(judge=judge, step_chars=50, window_chars=200, **settings)


def model_chunks(items) -> list[AIMessageChunk]:
    return [p[0] for mode, p in items if mode == "messages" and isinstance(p[0], AIMessageChunk)]


def photo_tool(png: bytes):
    @tool
    def take_photo() -> list[dict]:
        """Take a photo with the robot's camera."""
        return [{"type": "image", "base64": base64.b64encode(png).decode(), "mime_type": "image/png"}]

    return take_photo


def call(name: str, args: str, call_id: str = "call_1") -> AIMessageChunk:
    return AIMessageChunk(content="", tool_call_chunks=[{"name": name, "args": args, "id": call_id, "index": 0}])


@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
async def test_messages_mode_never_shows_the_trigger(judge, use_async):
    answer = SAFE + UNSAFE + TAIL
    model = ScriptedChatModel(replies=[cut(answer)], pace=Lockstep(judge, 50))
    agent = create_agent(model, [], middleware=[middleware(judge)])
    modes = ["messages", "updates", "values"]
    if use_async:
        items = [item async for item in agent.astream(QUESTION, stream_mode=modes)]
    else:
        items = list(agent.stream(QUESTION, stream_mode=modes))
    chunks = model_chunks(items)
    shown = "".join(c.content for c in chunks)
    assert "bomb" not in str(items)  # no mode showed it: not the tokens, not an update, not a state
    assert shown.startswith(SAFE[:100]) and shown.endswith("Sorry: Indiscriminate Weapons.")
    assert len(shown) - len("Sorry: Indiscriminate Weapons.") <= answer.index("bomb")
    assert model.produced < len(cut(answer)) / 2  # the model was stopped at the unsafe window
    final = [p for mode, p in items if mode == "values"][-1]["messages"][-1]
    assert final.content == "Sorry: Indiscriminate Weapons." and final.id == chunks[0].id  # replaced, same id
    assert final.response_metadata["omniguard"]["categories"] == ["S9"]


@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
async def test_a_safe_streamed_reply_arrives_whole(judge, use_async):
    answer = SAFE + TAIL
    model = ScriptedChatModel(replies=[cut(answer, 5)])
    agent = create_agent(model, [], middleware=[middleware(judge)])
    if use_async:
        items = [item async for item in agent.astream(QUESTION, stream_mode=["messages", "values"])]
    else:
        items = list(agent.stream(QUESTION, stream_mode=["messages", "values"]))
    assert "".join(c.content for c in model_chunks(items)) == answer
    final = [p for mode, p in items if mode == "values"][-1]["messages"][-1]
    assert final.content == answer and final.response_metadata["omniguard"]["label"] == "safe"
    whole = [r for r in judge.backend.requests if answer.strip() in r.prompt]
    assert len(whole) == 1  # the final check saw the whole reply, once (after_model did not judge it again)


def test_error_raises_before_the_trigger_is_shown(judge):
    model = ScriptedChatModel(replies=[cut(SAFE + UNSAFE + TAIL)], pace=Lockstep(judge, 50))
    agent = create_agent(model, [], middleware=[middleware(judge, exit_behavior="error")])
    seen: list[str] = []
    with pytest.raises(GuardViolation) as caught:
        for _mode, payload in agent.stream(QUESTION, stream_mode=["messages"]):
            seen.append(str(payload[0].content))
    assert caught.value.stage == "output" and "bomb" not in "".join(seen)


def test_unsafe_tool_call_arguments_are_never_shown_nor_run(judge):
    ran: list[str] = []

    @tool
    def send_note(text: str) -> str:
        """Send a note."""
        ran.append(text)
        return "sent"

    reply = [AIMessageChunk(content="Sending it now."), call("send_note", '{"text": "how to build'),
             call(None, ' a bomb"}', None)]  # type: ignore[arg-type]
    model = ScriptedChatModel(replies=[reply, ["done"]])
    agent = create_agent(model, [send_note], middleware=[middleware(judge)])
    items = list(agent.stream(QUESTION, stream_mode=["messages", "updates"]))
    assert "bomb" not in str(items) and ran == []
    assert "".join(str(c.content) for c in model_chunks(items)) == "Sorry: Indiscriminate Weapons."


def test_media_the_model_streams_is_judged_before_it_is_shown(judge, red_png):
    image = {"type": "image", "base64": base64.b64encode(red_png).decode(), "mime_type": "image/png"}
    reply = [AIMessageChunk(content="Here is the picture: "), AIMessageChunk(content=[image]),
             AIMessageChunk(content=" Enjoy.")]
    agent = create_agent(ScriptedChatModel(replies=[reply]), [], middleware=[middleware(judge)])
    items = list(agent.stream(QUESTION, stream_mode=["messages", "values"]))
    assert "image" not in str([c.content for c in model_chunks(items)])
    assert [p for mode, p in items if mode == "values"][-1]["messages"][-1].content == "Sorry: Violent Crimes."
    media_checks = [r for r in judge.backend.requests if [m.kind for m in r.media] == ["image"]]
    assert media_checks  # the image was judged as it arrived


@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
async def test_an_unsafe_tool_result_never_reaches_any_stream_mode(judge, red_png, use_async):
    reply = [call("take_photo", "{}")]
    model = ScriptedChatModel(replies=[reply, ["never said"]])
    agent = create_agent(model, [photo_tool(red_png)], middleware=[middleware(judge, check_tool_results=True)])
    modes = ["messages", "updates", "values"]
    if use_async:
        items = [item async for item in agent.astream(QUESTION, stream_mode=modes)]
    else:
        items = list(agent.stream(QUESTION, stream_mode=modes))
    assert "base64" not in str(items)  # the image was replaced before the tools node handed it on
    final_state = [p for mode, p in items if mode == "values"][-1]
    tool_messages = [m for m in final_state["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ["Sorry: Violent Crimes."]
    assert len(model.seen) == 1  # "end": the model never ran again
    last = [p for mode, p in items if mode == "values"][-1]["messages"][-1]
    assert isinstance(last, AIMessage) and last.content == "Sorry: Violent Crimes."


def test_v3_events_judge_tool_results_and_tokens(judge, red_png):
    reply = [AIMessageChunk(content="Let me look."), call("take_photo", "{}")]
    model = ScriptedChatModel(replies=[reply, cut(SAFE + UNSAFE)])
    agent = create_agent(model, [photo_tool(red_png)], middleware=[
        middleware(judge, check_tool_results=True, exit_behavior="replace")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = list(agent.stream_events(QUESTION, version="v3"))
    finished = [e["params"]["data"] for e in events if e["method"] == "tools"
                and e["params"]["data"].get("event") == "tool-finished"]
    assert [f["output"].content for f in finished] == ["Sorry: Violent Crimes."]
    assert "base64" not in str(events) and "bomb" not in str(events)


def test_an_unsafe_tool_result_in_the_input_state_is_replaced_under_end(judge, red_png):
    image = {"type": "image", "base64": base64.b64encode(red_png).decode(), "mime_type": "image/png"}
    history = [HumanMessage("What do you see?"),
               AIMessage(content="", tool_calls=[{"name": "take_photo", "args": {}, "id": "call_1"}]),
               ToolMessage(content=[image], tool_call_id="call_1")]
    model = ScriptedChatModel(replies=[["never said"]])
    agent = create_agent(model, [], middleware=[middleware(judge, check_tool_results=True)])
    messages = agent.invoke({"messages": history})["messages"]
    tool_message = next(m for m in messages if isinstance(m, ToolMessage))
    assert tool_message.content == "Sorry: Violent Crimes." and model.seen == []
    assert messages[-1].content == "Sorry: Violent Crimes."


def test_a_model_that_cannot_stream_is_judged_whole_and_keeps_its_state(judge):
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    class Whole(ScriptedChatModel):  # only _generate: the streams are BaseChatModel's, which cannot stream
        _stream = BaseChatModel._stream  # type: ignore[assignment]
        _astream = BaseChatModel._astream  # type: ignore[assignment]

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="".join(self._next(messages))))])

    agent = create_agent(Whole(replies=[[SAFE, UNSAFE]]), [], middleware=[middleware(judge)])
    items = list(agent.stream(QUESTION, stream_mode="messages"))
    assert "bomb" not in str(items)
    counter = FakeListChatModel(responses=["a", "b"])
    create_agent(counter, [], middleware=[middleware(judge)]).invoke(QUESTION)
    assert counter.invoke("x").content == "b"  # the agent ran the user's own model object: one state
