"""What the agent middleware's output rail judges in a reply besides text: audio content blocks
and OpenAI's spoken answers as audio parts (a real ``ChatOpenAI`` against the loopback upstream),
and tool calls as every door renders them (``doors.render_tool_call``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langchain_omniguard import OmniGuardMiddleware
from langchain_openai import ChatOpenAI

from omniguard_plugins.content import Text
from omniguard_plugins.doors import render_tool_call
from tests.support.lc_stream_models import ScriptedChatModel
from tests.support.lc_upstream import serve_upstream

QUESTION = {"messages": [HumanMessage("Sing me something")]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_upstream() as url:
        yield url


def output_requests(judge: Any) -> list[Any]:
    return [r for r in judge.backend.requests if "'Agent' messages" in r.prompt]


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_an_audio_block_in_a_reply_is_judged_as_audio(judge, wav, streamed):
    audio = {"type": "audio", "base64": base64.b64encode(wav).decode(), "mime_type": "audio/wav"}
    reply = [AIMessageChunk(content="Listen to this: "), AIMessageChunk(content=[audio])]
    agent = create_agent(ScriptedChatModel(replies=[reply]), [], middleware=[OmniGuardMiddleware(judge=judge)])
    if streamed:
        list(agent.stream(QUESTION, stream_mode="messages"))
    else:
        agent.invoke(QUESTION)
    kinds = [[m.kind for m in r.media] for r in output_requests(judge)]
    assert ["audio"] in kinds  # the whole reply's check (and, streamed, the audio block's own window)


def test_chatopenai_spoken_answer_is_judged_as_audio_with_its_transcript(judge, upstream):
    """(Streamed, langchain-openai 1.8 drops the ``delta.audio`` pieces: nothing of them reaches
    the agent or its streams, so there is nothing to hold back.)"""
    model = ChatOpenAI(base_url=upstream, api_key="sk-test", model="upstream-llm", max_retries=0,  # type: ignore[arg-type]
                       http_async_client=openai.DefaultAsyncHttpxClient(),
                       model_kwargs={"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}})
    agent = create_agent(model, [], middleware=[OmniGuardMiddleware(judge=judge)])
    agent.invoke({"messages": [HumanMessage("sing loudly please")]})
    spoken = [r for r in output_requests(judge) if [m.kind for m in r.media] == ["audio"]]
    assert spoken and "Here is a little song for you." in spoken[-1].prompt


def test_a_tool_call_is_judged_as_every_door_renders_it(judge, red_png):
    ran: list[str] = []

    @tool
    def post_photo(caption: str, photo: str) -> str:
        """Post a photo."""
        ran.append(caption)
        return "posted"

    args = {"caption": "Look at this", "photo": "data:image/png;base64," + base64.b64encode(red_png).decode()}
    reply = AIMessage(content="", tool_calls=[{"name": "post_photo", "args": args, "id": "c1"}])
    model = ScriptedChatModel(replies=[[AIMessageChunk(content="", tool_calls=reply.tool_calls)], ["never"]])
    agent = create_agent(model, [post_photo], middleware=[OmniGuardMiddleware(judge=judge, violation_message="No.")])
    result = agent.invoke(QUESTION)
    assert ran == [] and result["messages"][-1].content == "No."  # the red image in the call is unsafe (S1)
    rendered = render_tool_call("post_photo", args)
    text = next(p.text for p in rendered if isinstance(p, Text))
    whole = [r for r in output_requests(judge) if text in r.prompt]
    assert whole and [m.kind for m in whole[-1].media] == ["image"]
