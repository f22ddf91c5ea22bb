"""OmniGuardProcessor: a pipecat ``FrameProcessor`` over the core live session.

One class judges whatever passes through it, so it can sit after the STT (user audio, camera
images, transcriptions) and before the TTS (the LLM's text); :meth:`OmniGuardProcessor.pair`
makes the two, sharing one :class:`~omniguard_plugins.live.LiveSession` so the output rail knows
the turn it answers. What each frame meets:

| frame                               | what happens                                                    |
|-------------------------------------|-----------------------------------------------------------------|
| ``InputAudioRawFrame``              | fed to the session (rolling windows), passed on at once          |
| ``InputImageRawFrame``              | sampled (1/s); a sample passes once judged safe, the rest dropped |
| ``TranscriptionFrame``              | ends the turn: audio + text + frames judged; held until safe    |
| ``LLMFullResponseStartFrame`` ...   | a new output rail; ``LLMTextFrame`` held until safe windows     |
| ``LLMTextFrame`` ... ``EndFrame``   | cover it; anything else in the response keeps its place         |
| other system frames                 | passed on at once, never delayed                                 |
| anything else                       | passed on untouched, in order                                    |

A blocked user turn: its transcription is dropped (the LLM never sees it) and the refusal is
spoken (a ``TTSSpeakFrame``). A blocked answer: nothing unjudged reached the TTS; the bot is
interrupted both ways (an ``InterruptionFrame``, so the output transport also drops audio the
TTS already made) and the refusal is spoken. Every verdict goes to ``on_verdict`` handlers as a
:class:`~omniguard_plugins.live.LiveVerdict` (``.to_json()`` is the summary every door sends,
with ``session_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Literal

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputImageRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    SystemFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from omniguard_plugins.live import (
    LiveInputError,
    LiveOutput,
    LiveSession,
    LiveSettings,
    LiveVerdict,
    OnBlock,
    live_blocking,
)

if TYPE_CHECKING:
    from omniguard_plugins.judge import OmniGuard
    from omniguard_plugins.policy import Policy
    from omniguard_plugins.verdict import Verdict

__all__ = ["OmniGuardProcessor"]

log = logging.getLogger("pipecat_omniguard")



class OmniGuardProcessor(FrameProcessor):
    """Judge a live pipecat pipeline: user audio, camera frames and turns on the way to the
    LLM, the LLM's text on the way to the TTS. See the module docstring for each frame.

    ``judge``: an OmniGuard (default ``OmniGuard.shared()``). ``settings``: the live session's
    windows, sampling and limits; ``speculative=True`` there lets a turn reach the LLM while it
    is judged (its answer is held until the verdict). ``on_block``: ``"speak"`` the refusal
    (``template``, default the core's) or stay ``"silent"``. ``check_input`` / ``check_output``
    turn either side off. ``session``: share one with another processor (see :meth:`pair`).
    ``turn_end``: a turn ends with its ``TranscriptionFrame`` (default), or, in a pipeline with
    no STT, when the VAD says the user stopped (the turn's audio and frames are judged alone;
    ``on_verdict`` hears it, as the turn's audio already went on).
    """

    def __init__(
        self,
        judge: OmniGuard | None = None,
        *,
        settings: LiveSettings | None = None,
        policy: Policy | None = None,
        on_block: OnBlock = "speak",
        template: str | None = None,
        check_input: bool = True,
        check_output: bool = True,
        session: LiveSession | None = None,
        turn_end: Literal["transcription", "vad"] = "transcription",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if turn_end not in ("transcription", "vad"):
            raise ValueError(f"turn_end must be 'transcription' or 'vad', got {turn_end!r}")
        self.turn_end = turn_end
        self.blocking = live_blocking(on_block, template)
        self.check_input = check_input
        self.check_output = check_output
        self.session = session or LiveSession(judge, settings, policy=policy)
        self.session.add_listener(self._heard)
        self._rail: LiveOutput[Frame] | None = None
        self._held: set[asyncio.Task[None]] = set()
        self._blocked_turn: int | None = None
        self._turn_open = False
        self._register_event_handler("on_verdict")

    @classmethod
    def pair(cls, judge: OmniGuard | None = None, **options: Any) -> tuple[OmniGuardProcessor, OmniGuardProcessor]:
        """Two processors on one session: put the first after the STT, the second before the TTS."""
        first = cls(judge, check_output=False, **options)
        second = cls(judge, check_input=False, session=first.session,
                     **{k: v for k, v in options.items() if k not in ("settings", "policy")})
        return first, second

    # -------------------------------------------------------------- frames

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            if isinstance(frame, UserStartedSpeakingFrame) and self.check_input:
                self._turn_starts()
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, InputAudioRawFrame) and self.check_input:
            self._feed_audio(frame)
            await self.push_frame(frame, direction)
        elif isinstance(frame, InputImageRawFrame) and self.check_input:
            self._feed_image(frame)
        elif isinstance(frame, TranscriptionFrame) and self.check_input:
            await self._end_turn(frame)
        elif isinstance(frame, InterimTranscriptionFrame) and self.check_input:
            pass  # partial text: judged with the turn when the final transcription comes
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self.check_input and self.turn_end == "vad":
            self._turn_open = False
            verdict = self.session.close_turn(None)  # closed now: audio after the stop is the next turn's
            await self.push_frame(frame, direction)
            self._spawn(self._spoken_turn_judged(verdict))
        elif isinstance(frame, (VADUserStartedSpeakingFrame, UserStartedSpeakingFrame)) and self.check_input:
            self._turn_starts()
            await self.push_frame(frame, direction)
        elif isinstance(frame, (InterruptionFrame, CancelFrame)):
            self._stop_output()
            if isinstance(frame, CancelFrame):
                self._drop_held()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._end(frame)
        elif isinstance(frame, (StartFrame, SystemFrame)):
            await self.push_frame(frame, direction)
        elif self.check_output and isinstance(frame, LLMFullResponseStartFrame):
            self._stop_output()
            self._rail = self.session.output(on_release=self._release, on_block=self._output_blocked, read=_read)
            await self.push_frame(frame, direction)
        elif self._rail is not None and isinstance(frame, LLMFullResponseEndFrame):
            rail, self._rail = self._rail, None
            await rail.feed(frame)
            await rail.finish()
        elif self._rail is not None:
            await self._rail.feed(frame)
        elif self.check_output and isinstance(frame, LLMTextFrame):
            await self._judge_lone_text(frame)
        else:
            await self.push_frame(frame, direction)

    # -------------------------------------------------------------- the user's side

    def _turn_starts(self) -> None:
        # the first start signal opens the turn (VAD, then the aggregator's, may both come);
        # a later one must not drop the audio the turn already has
        if not self._turn_open and self.session.turn_blocked is None:
            self.session.start_turn()
        self._turn_open = True

    def _feed_audio(self, frame: InputAudioRawFrame) -> None:
        try:
            self.session.feed_audio(frame.audio, frame.sample_rate, frame.num_channels)
        except LiveInputError as exc:  # counted by the session; the audio still goes to the STT
            log.warning("omniguard: audio frame not judged: %s", exc)

    def _feed_image(self, frame: InputImageRawFrame) -> None:
        try:
            judged = self.session.feed_image(frame.image, size=frame.size, format=frame.format)
        except LiveInputError as exc:
            log.warning("omniguard: camera frame dropped: %s", exc)
            return
        if judged is None:
            return  # between samples: dropped (counted)
        self._spawn(self._pass_when_safe(frame, judged))

    async def _pass_when_safe(self, frame: Frame, judged: asyncio.Future[LiveVerdict | None]) -> None:
        live = await judged
        if live is not None and live.safe:
            await self.push_frame(frame)

    async def _end_turn(self, frame: TranscriptionFrame) -> None:
        self._turn_open = False
        if self.session.settings.speculative:
            turn = self.session.close_turn(frame.text)
            await self.push_frame(frame)
            turn.add_done_callback(lambda t: None if t.cancelled() or t.exception() else self._late_verdict(t.result()))
            return
        live = await self.session.end_turn(frame.text)
        if live is None or live.safe:
            await self.push_frame(frame)
        else:
            await self._turn_blocked(live)

    async def _spoken_turn_judged(self, verdict: asyncio.Future[LiveVerdict | None]) -> None:
        live = await verdict
        if live is not None and not live.safe:
            await self._turn_blocked(live)

    def _spawn(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    def _late_verdict(self, live: LiveVerdict | None) -> None:
        if live is not None and not live.safe:
            self._spawn(self._interrupt_and_refuse(live.verdict, "input"))

    async def _turn_blocked(self, live: LiveVerdict) -> None:
        if self._blocked_turn == live.turn:
            return  # the refusal for this turn was spoken when its window blocked
        self._blocked_turn = live.turn
        await self._refuse(live.verdict, "input")

    # -------------------------------------------------------------- the agent's side

    async def _release(self, frames: list[Frame]) -> None:
        for frame in frames:
            await self.push_frame(frame)

    async def _output_blocked(self, verdict: Verdict) -> None:
        # not awaited here: interrupting resets this processor's frame queue, which the rail may be feeding
        self._spawn(self._interrupt_and_refuse(verdict, "output"))

    async def _interrupt_and_refuse(self, verdict: Verdict, stage: Literal["input", "output"]) -> None:
        self._stop_output()
        await self.broadcast_interruption()
        await self._refuse(verdict, stage)

    async def _judge_lone_text(self, frame: LLMTextFrame) -> None:
        """LLM text outside a response (no start frame): one rail for the one frame."""
        rail = self.session.output(on_release=self._release, on_block=self._output_blocked, read=_read)
        await rail.feed(frame)
        await rail.finish()

    def _stop_output(self) -> None:
        if self._rail is not None:
            self._rail.cancel()
            self._rail = None

    async def _refuse(self, verdict: Verdict, stage: Literal["input", "output"]) -> None:
        decision = self.blocking.decide(verdict, stage)
        if decision.text:
            await self.push_frame(TTSSpeakFrame(decision.text))

    # -------------------------------------------------------------- verdicts and the end

    def _heard(self, live: LiveVerdict) -> None:
        if not (self.check_output if live.stage == "output" else self.check_input):
            return  # the processor on the other side of a pair tells its own handlers
        self._spawn(self._call_event_handler("on_verdict", live))
        if live.check == "audio_window" and not live.safe and self.check_input:
            self._blocked_turn = live.turn
            self._spawn(self._refuse(live.verdict, "input"))  # cut off while still speaking

    async def _end(self, frame: EndFrame) -> None:
        if self._rail is not None:
            rail, self._rail = self._rail, None
            await rail.finish()
        while self._held:
            await asyncio.gather(*list(self._held), return_exceptions=True)
        if self.check_input:
            self.session.close()
        await self.push_frame(frame)

    def _drop_held(self) -> None:
        for task in list(self._held):
            task.cancel()
        self.session.close()


def _read(frame: Frame) -> tuple[str | None, tuple[()]]:
    """What a frame adds to the answer the rail judges: an LLMTextFrame its text, any other
    frame in the response nothing (it keeps its place in the order)."""
    return (frame.text if isinstance(frame, LLMTextFrame) else ""), ()

