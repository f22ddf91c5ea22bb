"""A live voice and video session, judged while it runs. Framework-free: doors map frames in.

What it judges (see ``docs/live.md``):

- **The user's turn when it ends**: its audio, its transcript and the latest camera frames, in
  one check, before the turn goes on to the LLM (:meth:`LiveSession.end_turn`).
- **Rolling audio windows while the user speaks** (``window_s`` long, one every ``step_s``), so
  a long utterance is stopped early when it turns unsafe (``on_block`` hears it at once).
- **Camera frames**, sampled at one per ``frame_interval_s``; a door passes on only frames whose
  sample was judged safe (:meth:`LiveSession.feed_image` says which).
- **The agent's outgoing text** through the core stream rail (:meth:`LiveSession.output`), before
  the TTS speaks it; it also waits for the verdict on the turn it answers.

Every verdict goes out as a :class:`LiveVerdict` with its time span in the session. Audio spans
count the audio received since the session began (16 kHz samples, so they are exact however
fast frames arrive); frames and text are stamped with the session clock unless the door says.

Bounded: a turn keeps at most ``max_turn_s`` of audio (the older part must have been judged by a
window, or the turn check fails closed); waiting window and frame checks are capped and the
oldest are shed and counted (:class:`LiveStats`); an overloaded judge answers with a blocking
verdict under ``on_error="block"``, as everywhere.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..content import Audio, Conversation, Image, MediaPart, Part, Text, Turn
from ..doors import Ask, RailSession
from ..streaming import Read, StreamRail, amoderate, output_judge
from ._batches import Batches
from ._frames import to_pil
from ._output import Answer, LiveOutput
from ._pcm import TARGET_RATE, PcmStream, Ring
from ._turn import Turn as TurnState
from ._types import LiveSettings, LiveStats, LiveVerdict
from .errors import LiveInputError

if TYPE_CHECKING:
    from ..judge import OmniGuard
    from ..policy import Policy
    from ..verdict import Verdict

__all__ = ["LiveOutput", "LiveSession", "LiveSettings", "LiveStats", "LiveVerdict"]

T = TypeVar("T")


Callback = Callable[[LiveVerdict], "Awaitable[None] | None"]


class LiveSession:
    """One live session: feed it audio, frames, transcripts and outgoing text; it judges them.

    ``judge`` defaults to ``OmniGuard.shared()`` (resolved on first use). ``on_verdict`` hears
    every :class:`LiveVerdict`; ``on_block`` hears a verdict that blocks the user's turn while it
    is still being spoken (a rolling window), so the door can act before the turn ends. Use it
    from one event loop; :meth:`feed_audio` and :meth:`feed_image` need a running loop.
    """

    def __init__(
        self,
        judge: OmniGuard | None = None,
        settings: LiveSettings | None = None,
        *,
        policy: Policy | None = None,
        on_verdict: Callable[[LiveVerdict], None] | None = None,
        on_block: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or LiveSettings()
        self.stats = LiveStats()
        self._judge = judge
        self._policy = policy
        self._listeners: list[Callable[[LiveVerdict], None]] = [on_verdict] if on_verdict is not None else []
        self._on_block = on_block
        self._clock = clock
        self._started = clock()
        s = self.settings
        self._window = int(round(s.window_s * TARGET_RATE))
        self._step = int(round(s.step_s * TARGET_RATE))
        self._pcm = PcmStream()
        self._ring = Ring(int(round(s.max_turn_s * TARGET_RATE)))
        self._samples = 0  # audio received since the session began, at 16 kHz
        self._turn: TurnState | None = None
        self._turns = 0
        self._frames: deque[tuple[float, Any]] = deque(maxlen=max(1, s.turn_frames))
        self._last_frame_at: float | None = None
        self._batches = Batches(self._get_judge, {"audio_window": s.max_waiting_windows, "frame": s.max_waiting_frames},
                                self._shed)
        self._gate: asyncio.Future[LiveVerdict | None] | None = None
        self._context: tuple[Turn, ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ clock and judge

    @property
    def judge(self) -> OmniGuard:
        return self._get_judge()

    def _get_judge(self) -> OmniGuard:
        if self._judge is None:
            from ..judge import OmniGuard

            self._judge = OmniGuard.shared()
        return self._judge

    @property
    def now(self) -> float:
        """Seconds since the session began, by the session clock."""
        return self._clock() - self._started

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio received since the session began."""
        return self._samples / TARGET_RATE

    @property
    def turn_blocked(self) -> LiveVerdict | None:
        """The verdict that blocked the current turn while it was spoken, if one did."""
        return self._turn.blocked if self._turn is not None else None

    # ------------------------------------------------------------------ audio

    def start_turn(self) -> None:
        """The user started speaking: a new turn begins with the next audio (audio before it,
        e.g. silence before voice activity, is not part of the turn)."""
        self._turn = None

    def feed_audio(self, pcm: bytes, sample_rate: int, channels: int = 1) -> None:
        """One chunk of 16-bit PCM from the microphone. Windows it completes are sent to the
        judge at once (not awaited). Raises :class:`LiveInputError` for an impossible format
        (counted in ``bad_chunks``); empty chunks and odd lengths are fine."""
        if not pcm:
            self.stats.empty_chunks += 1
            return
        try:
            samples = self._pcm.push(pcm, sample_rate, channels)
        except LiveInputError:
            self.stats.bad_chunks += 1
            raise
        self.stats.audio_chunks += 1
        self.stats.format_changes = self._pcm.format_changes
        if not len(samples):
            return
        turn = self._turn or self._new_turn()
        before = self._ring.start
        self._ring.write(samples)
        self._samples += len(samples)
        self.stats.audio_seconds = self.audio_seconds
        if self._ring.start > before:
            self.stats.turn_audio_trimmed_s += (self._ring.start - max(before, turn.start)) / TARGET_RATE
        self._send_windows(turn)

    def _new_turn(self) -> TurnState:
        self._turns += 1
        self._ring.clear(self._samples)
        self._turn = TurnState(self._turns, self._samples, self._samples + self._window)
        return self._turn

    def _send_windows(self, turn: TurnState) -> None:
        while turn.blocked is None and turn.next_window_end <= self._samples:
            end = turn.next_window_end
            turn.next_window_end += self._step
            start = max(turn.start, end - self._window)
            audio = self._ring.span(start, end)
            if not len(audio):
                continue
            ask = Ask(conversation=Conversation((Turn("user", (self._audio(audio),)),)), stage="input",
                      policy=self._policy)
            future = self._batches.submit("audio_window", ask)
            turn.windows.add(future)
            future.add_done_callback(functools.partial(self._window_judged, turn, start, end))

    def _window_judged(self, turn: TurnState, start: int, end: int, future: asyncio.Future[Verdict | None]) -> None:
        turn.windows.discard(future)
        if future.cancelled() or future.exception() is not None or future.result() is None:
            return
        verdict = future.result()
        assert verdict is not None
        self.stats.windows_judged += 1
        live = LiveVerdict("audio_window", verdict, (start / TARGET_RATE, end / TARGET_RATE), turn.index)
        self._emit(live)
        if verdict.safe:
            turn.judged_safe(start, end)
        elif turn.blocked is None:
            turn.blocked = live
            self.stats.turns_blocked += 1
            if self._on_block is not None:
                self._spawn(self._on_block(live))

    @staticmethod
    def _audio(samples: Any) -> Audio:
        from ..media import wav_bytes  # the core's one WAV writer

        return Audio(wav_bytes(samples, TARGET_RATE), mime_type="audio/wav", name="microphone")

    # ------------------------------------------------------------------ camera

    def feed_image(
        self, image: Any, *, size: tuple[int, int] | None = None, format: str | None = None, at: float | None = None
    ) -> asyncio.Future[LiveVerdict | None] | None:
        """One camera frame (a PIL image, raw bytes with ``size`` and ``format``, or JPEG/PNG
        bytes) at session time ``at`` (default: now). Returns None when the frame falls between
        samples (dropped, counted), else a future answering its :class:`LiveVerdict`, or None if
        its check was shed under load. A door passes a frame on only after a safe verdict.
        Raises :class:`LiveInputError` for a frame whose bytes are not an image (counted)."""
        self.stats.frames_seen += 1
        when = self.now if at is None else float(at)
        interval = self.settings.frame_interval_s
        if self._last_frame_at is not None and when - self._last_frame_at < interval:
            self.stats.frames_skipped += 1
            return None
        try:
            pil = to_pil(image, size, format)
        except LiveInputError:
            self.stats.frames_corrupt += 1
            raise
        self._last_frame_at = when
        self._frames.append((when, pil))
        turn = self._turn.index if self._turn is not None else self._turns + 1
        ask = Ask(conversation=Conversation((Turn("user", (Image(pil, name="camera"),)),)), stage="input",
                  policy=self._policy)
        judged = self._batches.submit("frame", ask)
        out: asyncio.Future[LiveVerdict | None] = asyncio.get_running_loop().create_future()

        def done(f: asyncio.Future[Verdict | None]) -> None:
            if out.done():
                return
            if f.cancelled() or (f.exception() is None and f.result() is None):
                out.set_result(None)  # shed under load: never judged
                return
            error = f.exception()
            if error is not None:
                out.set_exception(error)
                return
            verdict = f.result()
            assert verdict is not None
            self.stats.frames_judged += 1
            live = LiveVerdict("frame", verdict, (when, when), turn)
            self._emit(live)
            out.set_result(live)

        judged.add_done_callback(done)
        return out

    # ------------------------------------------------------------------ the turn

    async def end_turn(self, transcript: str | None = None, media: Sequence[MediaPart] = ()) -> LiveVerdict | None:
        """The user's turn ended: judge its audio, ``transcript`` and the latest camera frames in
        one check (and wait for its rolling windows); ``media`` are parts the turn's message
        carries besides (an image the user sent with it). Returns the turn's verdict (an unsafe
        window's, if one blocked it), or None when the turn had nothing to judge."""
        return await self.close_turn(transcript, media)

    def close_turn(
        self, transcript: str | None = None, media: Sequence[MediaPart] = ()
    ) -> asyncio.Future[LiveVerdict | None]:
        """:meth:`end_turn` without waiting: the turn is closed now (audio that arrives next
        belongs to the next turn, an output rail made next waits for this verdict) and judged
        in the background; the future answers what ``end_turn`` returns. For ``speculative``
        doors, which pass the turn on to the LLM at once."""
        turn, self._turn = self._turn, None
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[LiveVerdict | None] = loop.create_future()
        self._gate = gate
        prepared = self._prepare_turn(turn, transcript, tuple(media))
        if prepared is None or isinstance(prepared, LiveVerdict):
            self._turn_judged(gate, turn, prepared)
            return gate
        task = loop.create_task(self._judge_turn(turn, *prepared))
        self._tasks.add(task)

        def done(t: asyncio.Task[LiveVerdict]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                gate.cancel()
            elif t.exception() is not None:
                gate.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                self._turn_judged(gate, turn, t.result())

        task.add_done_callback(done)
        return gate

    def _turn_judged(
        self, gate: asyncio.Future[LiveVerdict | None], turn: TurnState | None, live: LiveVerdict | None
    ) -> None:
        if live is not None:
            self.stats.turns += 1
            if not live.safe and (turn is None or turn.blocked is None):
                self.stats.turns_blocked += 1
        if not gate.done():
            gate.set_result(live)

    def _prepare_turn(
        self, turn: TurnState | None, transcript: str | None, media: tuple[MediaPart, ...]
    ) -> LiveVerdict | None | tuple[Ask, int, tuple[float, float], int]:
        """What the turn check needs, taken now (the next turn reuses the audio buffer)."""
        text = (transcript or "").strip()
        self._context = (Turn("user", (Text(text),)),) if text else ()
        if turn is not None and turn.blocked is not None:
            return turn.blocked
        span = ((turn.start if turn is not None else self._samples) / TARGET_RATE, self._samples / TARGET_RATE)
        parts: list[Part] = [Text(text)] if text else []
        held_from = self._ring.start
        if turn is not None:
            audio = self._ring.span(self._ring.start, self._ring.end)
            if len(audio):
                parts.append(self._audio(audio))
        if self.settings.turn_frames:
            parts.extend(Image(pil, name="camera") for _, pil in list(self._frames)[-self.settings.turn_frames:])
        parts.extend(media)
        if not parts:
            return None
        index = turn.index if turn is not None else self._turns + 1
        if turn is None:
            self._turns += 1
        ask = Ask(conversation=Conversation((Turn("user", tuple(parts)),)), stage="input", policy=self._policy)
        return ask, index, span, held_from

    async def _judge_turn(
        self, turn: TurnState | None, ask: Ask, index: int, span: tuple[float, float], held_from: int
    ) -> LiveVerdict:
        checks: list[Awaitable[Any]] = [self._get_judge().acheck(ask), *(turn.windows if turn is not None else ())]
        verdict, *_ = await asyncio.gather(*checks)
        if turn is not None and turn.blocked is not None:
            return turn.blocked  # a window judged while the turn check ran blocked it
        if verdict.safe and turn is not None and turn.covered_until() < held_from:
            verdict = await self._uncovered(turn, held_from)
        live = LiveVerdict("turn", verdict, span, index)
        self._emit(live)
        return live

    async def _uncovered(self, turn: TurnState, held_from: int) -> Verdict:
        """Audio that left the turn's buffer without a safe window: decided by ``on_error``."""
        gap = (turn.covered_until() / TARGET_RATE, held_from / TARGET_RATE)

        def builder() -> Conversation:
            raise LiveInputError(f"turn audio {gap[0]:.1f}-{gap[1]:.1f} s was longer than max_turn_s="
                                 f"{self.settings.max_turn_s} and no window judged it (shed under load)")

        return await self._get_judge().acheck(Ask(conversation=builder, stage="input", policy=self._policy))

    # ------------------------------------------------------------------ outgoing text

    def output(
        self,
        *,
        on_release: Callable[[list[T]], Awaitable[None] | None],
        on_block: Callable[[Verdict], Awaitable[None] | None] | None = None,
        read: Read[T] | None = None,
    ) -> LiveOutput[T]:
        """A push rail for the agent's next answer (``feed`` each chunk, ``finish`` at the end):
        windows are judged as output after the user's last transcript, chunks released only as
        safe verdicts cover them, and not before the verdict on the turn they answer (which
        matters in speculative mode). A blocked turn releases nothing, and ``on_block`` is then
        not called for its answer (the turn's refusal is the one)."""
        answer = Answer(self, on_block)

        async def release(chunks: list[T]) -> None:
            if await answer.turn_allowed():
                result = on_release(chunks)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result

        rail: StreamRail[T] = StreamRail(self.settings.stream, read=read)
        judge = output_judge(self._get_judge(), self._context, policy=self._policy)
        pushed = RailSession(rail, judge, on_release=release, on_block=answer.blocked, on_verdict=answer.heard)
        return LiveOutput(pushed)

    async def moderate_output(
        self,
        source: AsyncIterable[T],
        *,
        read: Read[T] | None = None,
        on_block: Callable[[Verdict], Awaitable[None] | None] | None = None,
    ) -> AsyncIterator[T]:
        """The pull form of :meth:`output`, for doors that hand over an async iterator (a
        LiveKit ``llm_node``): yields what the rail releases of ``source``; on a block the
        source is closed, nothing more is yielded and ``on_block`` hears the verdict."""
        answer = Answer(self, on_block)
        rail: StreamRail[T] = StreamRail(self.settings.stream, read=read)
        judge = output_judge(self._get_judge(), self._context, policy=self._policy)
        released = amoderate(source, rail, judge, on_verdict=answer.heard)
        try:
            async for chunk in released:
                if not await answer.turn_allowed():
                    return
                yield chunk
        finally:
            await released.aclose()  # type: ignore[attr-defined] # amoderate is an async generator
        if rail.blocked is not None:
            await answer.blocked(rail.blocked)

    # ------------------------------------------------------------------ plumbing

    def add_listener(self, callback: Callable[[LiveVerdict], None]) -> None:
        """Also tell ``callback`` every verdict (doors sharing a session each add one)."""
        self._listeners.append(callback)

    def _emit(self, live: LiveVerdict) -> None:
        for callback in self._listeners:
            callback(live)

    def _shed(self, kind: str) -> None:
        if kind == "frame":
            self.stats.frames_shed += 1
        else:
            self.stats.windows_shed += 1

    def _spawn(self, awaitable: Awaitable[None] | None) -> None:
        if awaitable is None or not (asyncio.iscoroutine(awaitable) or isinstance(awaitable, asyncio.Future)):
            return
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """End the session: waiting checks are dropped, the batch in flight is cancelled."""
        self._batches.close()
        for task in list(self._tasks):
            task.cancel()


