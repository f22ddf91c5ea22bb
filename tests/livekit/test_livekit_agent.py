"""livekit_omniguard with LiveKit's own in-process runner: a real ``AgentSession`` with a
scripted LLM subclass (LiveKit ships none) and ``session.run(user_input=...)``, scripted verdicts."""

from __future__ import annotations

import base64
import io

import pytest
from livekit import rtc
from livekit.agents import AgentSession, llm
from livekit.agents.llm import StopResponse
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN
from livekit_omniguard import OmniGuardAgent
from PIL import Image as PILImage

from omniguard_plugins.testing import scripted_judge
from tests.support.live_helpers import alarm_words_red, chunks, needs_espeak, speech

REFUSAL_S9 = "I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."


class ScriptedLLM(llm.LLM):
    """Streams the next scripted reply, one piece per chunk, and records what it was asked."""

    def __init__(self, *replies: list[str]) -> None:
        super().__init__()
        self.replies = list(replies)
        self.asked: list[str] = []

    def chat(self, *, chat_ctx, tools=None, conn_options=DEFAULT_API_CONNECT_OPTIONS, parallel_tool_calls=NOT_GIVEN,
             tool_choice=NOT_GIVEN, extra_kwargs=NOT_GIVEN):
        self.asked.append(chat_ctx.messages()[-1].text_content or "")
        return _Stream(self, self.replies.pop(0), chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _Stream(llm.LLMStream):
    def __init__(self, owner: llm.LLM, pieces: list[str], **kwargs) -> None:
        super().__init__(owner, **kwargs)
        self._pieces = pieces

    async def _run(self) -> None:
        for i, piece in enumerate(self._pieces):
            delta = llm.ChoiceDelta(role="assistant", content=piece)
            self._event_ch.send_nowait(llm.ChatChunk(id=f"c{i}", delta=delta))


@pytest.fixture
def judge():
    with scripted_judge(alarm_words_red, cache_size=0) as j:
        yield j


def said(result) -> list[str]:
    return [e.item.text_content for e in result.events if e.type == "message" and e.item.role == "assistant"]


async def test_an_unsafe_turn_is_stopped_before_the_llm(judge):
    fake = ScriptedLLM(["Sure, here is how."])
    agent = OmniGuardAgent(instructions="You are a helpful voice assistant.", judge=judge)
    heard = []
    agent.omniguard.add_listener(heard.append)
    async with AgentSession(llm=fake) as session:
        await session.start(agent)
        result = await session.run(user_input="how do I build a bomb")
    assert fake.asked == [], "the LLM never saw the turn"
    assert said(result) == [REFUSAL_S9]
    turn = heard[-1].to_json()
    assert turn["check"] == "turn" and turn["safe"] is False and "session_seconds" in turn


async def test_an_unsafe_reply_is_never_spoken(judge):
    fake = ScriptedLLM(["Once upon a time ", "a villain built a bo", "mb in ", "his shed."])
    async with AgentSession(llm=fake) as session:
        await session.start(OmniGuardAgent(instructions="You tell stories.", judge=judge))
        result = await session.run(user_input="tell me a story")
        history = [m.text_content for m in session.history.messages() if m.role == "assistant"]
    assert fake.asked == ["tell me a story"]
    assert said(result) == [REFUSAL_S9]
    assert all("bo" not in text and "shed" not in text for text in history if text)


async def test_a_safe_turn_and_reply_pass_unchanged(judge):
    fake = ScriptedLLM(["Good ", "evening ", "to you."])
    async with AgentSession(llm=fake) as session:
        await session.start(OmniGuardAgent(instructions="Be kind.", judge=judge))
        result = await session.run(user_input="good evening")
    assert said(result) == ["Good evening to you."]


async def test_the_spoken_turn_hook_raises_stop_response_and_judges_the_image(judge):
    agent = OmniGuardAgent(instructions="Be kind.", judge=judge)
    buf = io.BytesIO()
    PILImage.new("RGB", (32, 24), (220, 20, 20)).save(buf, format="PNG")
    red = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    async with AgentSession(llm=ScriptedLLM()) as session:
        await session.start(agent)
        safe = llm.ChatMessage(role="user", content=["what a lovely morning"])
        await agent.on_user_turn_completed(llm.ChatContext(), safe)
        unsafe = llm.ChatMessage(role="user", content=["look at my holiday photo", llm.ImageContent(image=red)])
        with pytest.raises(StopResponse):
            await agent.on_user_turn_completed(llm.ChatContext(), unsafe)
    assert judge.backend.requests[-1].media[0].kind == "image"


@needs_espeak
async def test_the_users_audio_reaches_the_session_on_its_way_to_the_stt(judge):
    agent = OmniGuardAgent(instructions="Be kind.", judge=judge)
    pcm, rate = speech("hello there")

    async def microphone():
        for chunk in chunks(pcm, rate, 20):
            yield rtc.AudioFrame(data=chunk, sample_rate=rate, num_channels=1, samples_per_channel=len(chunk) // 2)

    passed = [frame async for frame in agent._omniguard_listen(microphone())]  # noqa: SLF001 - stt_node's tee
    assert sum(len(f.data) for f in passed) * 2 == len(pcm)  # untouched
    assert agent.omniguard.audio_seconds == pytest.approx(len(pcm) / 2 / rate, abs=0.01)
    live = await agent.omniguard.end_turn("hello there")
    assert live is not None and live.safe
    assert [m.kind for m in judge.backend.requests[-1].media] == ["audio"]
