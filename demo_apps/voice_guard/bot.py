"""The voice bot: one pipecat pipeline per browser connection, OmniGuard on both rails.

    browser mic + camera -> SmallWebRTC (aiortc, local) -> Silero VAD -> guard_in
        -> agent (echo, or the OMNI_CHAT_LLM_URL model) -> guard_out -> espeak-ng TTS -> browser

There is no speech-to-text model here (none can be fetched offline), so a spoken turn is judged
by what OmniGuard hears and sees (its audio and the latest camera frame), ending when the VAD
says the user stopped; typed turns come over the data channel as transcriptions. Every verdict
goes to the page over the data channel, with its time span in the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner
from pipecat_omniguard import LiveSettings, LiveVerdict, OmniGuardProcessor

from .tts import ESPEAK, speak

if TYPE_CHECKING:
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    from demo_apps.omni_chat.agent import Agent
    from omniguard_plugins.judge import OmniGuard

__all__ = ["EspeakTTS", "VoiceAgent", "run_bot"]

log = logging.getLogger("voice_guard")

Send = Callable[[dict[str, Any]], None]


class VoiceAgent(FrameProcessor):
    """Answers each allowed turn through the demo's chat model (streamed as LLM text frames):
    a typed turn by its text, a spoken one (no STT here) by saying what it heard."""

    def __init__(self, agent: Agent, send: Send) -> None:
        super().__init__()
        self.agent = agent
        self.send = send
        self._replies: set[asyncio.Task[None]] = set()

    def spoken_turn_allowed(self, live: LiveVerdict) -> None:
        seconds = live.seconds[1] - live.seconds[0]
        self._start(f"(a spoken turn of {seconds:.1f} s; this demo has no speech-to-text)")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and direction == FrameDirection.DOWNSTREAM:
            self.send({"type": "user-text", "text": frame.text})
            self._start(frame.text)
            return
        await self.push_frame(frame, direction)

    def _start(self, text: str) -> None:
        task = asyncio.ensure_future(self._reply(text))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _reply(self, text: str) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            async for chunk in self.agent.model.astream([HumanMessage(text)]):
                if chunk.text:
                    await self.push_frame(LLMTextFrame(chunk.text))
        except Exception as exc:  # noqa: BLE001 - an LLM failure is said, not raised into the pipeline
            log.warning("voice_guard: the chat model failed: %s", exc)
            await self.push_frame(LLMTextFrame("Sorry, the chat model failed."))
        await self.push_frame(LLMFullResponseEndFrame())


class EspeakTTS(FrameProcessor):
    """A local TTS: the released reply (or a refusal) spoken by espeak-ng, and shown on the page."""

    def __init__(self, send: Send) -> None:
        super().__init__()
        self.send = send
        self._text: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextFrame):
            self._text.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            text, self._text = "".join(self._text), []
            await self._say(text, "bot-reply")
        elif isinstance(frame, TTSSpeakFrame):
            await self._say(frame.text, "bot-refusal")
        elif not isinstance(frame, LLMFullResponseStartFrame):
            await self.push_frame(frame, direction)

    async def _say(self, text: str, kind: str) -> None:
        if not text.strip():
            return
        self.send({"type": kind, "text": text})
        if ESPEAK is None:
            return
        pcm, rate = await asyncio.to_thread(speak, text)
        await self.push_frame(TTSAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1))


async def run_bot(connection: SmallWebRTCConnection, judge: OmniGuard, agent: Agent,
                  settings: LiveSettings | None = None) -> None:
    """Run one browser connection's pipeline until it hangs up."""
    send: Send = connection.send_app_message
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_in_sample_rate=16_000, audio_out_enabled=True,
                               video_in_enabled=True),
    )
    guard_in, guard_out = OmniGuardProcessor.pair(judge, settings=settings, turn_end="vad")
    voice_agent = VoiceAgent(agent, send)

    typed_turns = [0]  # typed turns waiting for their verdict: their reply starts from the transcription

    def verdict(live: LiveVerdict) -> None:
        send({"type": "omniguard-verdict", **live.to_json()})
        if live.check != "turn":
            return
        if typed_turns[0]:
            typed_turns[0] -= 1
        elif live.safe:
            voice_agent.spoken_turn_allowed(live)

    async def on_verdict(_processor: Any, live: LiveVerdict) -> None:
        verdict(live)

    guard_in.event_handler("on_verdict")(on_verdict)
    guard_out.event_handler("on_verdict")(on_verdict)
    pipeline = Pipeline([transport.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()), guard_in, voice_agent,
                         guard_out, EspeakTTS(send), transport.output()])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16_000), cancel_on_idle_timeout=False,
                            enable_rtvi=False)

    @transport.event_handler("on_app_message")
    async def typed(_transport: Any, message: Any, _sender: Any) -> None:
        if isinstance(message, dict) and message.get("type") == "user-text" and str(message.get("text", "")).strip():
            typed_turns[0] += 1
            guard_in.session.start_turn()  # a typed turn is judged on its own, not as part of the audio before it
            await worker.queue_frame(TranscriptionFrame(str(message["text"]), "browser", ""))

    @transport.event_handler("on_client_disconnected")
    async def gone(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
