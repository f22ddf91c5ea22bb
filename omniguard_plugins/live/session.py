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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from ..content import Audio, Conversation, Image, MediaPart, Part, Text, Turn
from ..doors import Ask, RailSession, summarize
from ..errors import ConfigError
from ..rails import Stage
from ..streaming import Read, StreamRail, StreamSettings, amoderate, output_judge
from ._batches import Batches
from ._frames import to_pil
from ._pcm import TARGET_RATE, PcmStream, Ring
from .errors import LiveInputError

if TYPE_CHECKING:
    from ..judge import OmniGuard
    from ..policy import Policy
    from ..streaming import Window
    from ..verdict import Verdict

__all__ = ["LiveOutput", "LiveSession", "LiveSettings", "LiveStats", "LiveVerdict"]

T = TypeVar("T")
CheckKind = Literal["turn", "audio_window", "frame", "output"]


@dataclass(frozen=True)
class LiveSettings:
    """How a live session is judged. Seconds throughout.

    ``window_s`` / ``step_s``: rolling audio windows while the user speaks (0 < step <= window).
    ``max_turn_s``: audio a turn keeps (memory bound); older audio must have been judged by a
    window. ``frame_interval_s``: one camera frame judged per interval, the rest dropped.
    ``turn_frames``: latest sampled frames judged with the turn. ``max_waiting_windows`` /
    ``max_waiting_frames``: checks that may wait for the judge per session before the oldest is
    shed. ``speculative``: the turn goes on to the LLM while it is judged; the LLM's output is
    held until that verdict is in (off: an unsafe turn never reaches the LLM). ``stream``: the
    outgoing text rail's settings; short windows (100 characters, one every 50) so speech starts
    after about 100 judged characters, not after a chat-sized window.
    """

    window_s: float = 3.0
    step_s: float = 1.0
    max_turn_s: float = 30.0
    frame_interval_s: float = 1.0
    turn_frames: int = 1
    max_waiting_windows: int = 2
    max_waiting_frames: int = 2
    speculative: bool = False
    stream: StreamSettings = field(default_factory=lambda: StreamSettings(window_chars=100, step_chars=50))

    def __post_init__(self) -> None:
        if not 0 < self.step_s <= self.window_s:
            raise ConfigError(f"need 0 < step_s <= window_s, got step_s={self.step_s}, window_s={self.window_s}")
        if self.max_turn_s < self.window_s:
            raise ConfigError(f"max_turn_s ({self.max_turn_s}) must be at least window_s ({self.window_s})")
        if self.frame_interval_s < 0:
            raise ConfigError(f"frame_interval_s must be >= 0, got {self.frame_interval_s}")
        for name in ("turn_frames", "max_waiting_windows", "max_waiting_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "turn_frames" else 1):
                raise ConfigError(f"{name} must be an int >= {0 if name == 'turn_frames' else 1}, got {value!r}")


@dataclass
class LiveStats:
    """What a session took in and what it dropped (never silently)."""

    audio_chunks: int = 0
    audio_seconds: float = 0.0
    empty_chunks: int = 0
    bad_chunks: int = 0
    format_changes: int = 0
    turns: int = 0
    turns_blocked: int = 0
    #: seconds of a turn's audio beyond ``max_turn_s``, no longer held (judged by windows)
    turn_audio_trimmed_s: float = 0.0
    windows_judged: int = 0
    windows_shed: int = 0
    frames_seen: int = 0
    frames_judged: int = 0
    #: frames between samples (never judged, never passed on)
    frames_skipped: int = 0
    frames_shed: int = 0
    frames_corrupt: int = 0
    outputs_blocked: int = 0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["audio_seconds"] = round(self.audio_seconds, 3)
        out["turn_audio_trimmed_s"] = round(self.turn_audio_trimmed_s, 3)
        return out


@dataclass(frozen=True)
class LiveVerdict:
    """One verdict of a live session: which check, the turn it belongs to, and its span in the
    session (``seconds``: start, end)."""

    check: CheckKind
    verdict: Verdict
    seconds: tuple[float, float]
    turn: int
    stage: Stage = "input"

    @property
    def safe(self) -> bool:
        return self.verdict.safe

    def to_json(self) -> dict[str, Any]:
        """The verdict summary every door sends, plus ``check``, ``turn`` and ``session_seconds``."""
        return {**summarize(self.verdict, self.stage).to_json(), "check": self.check, "turn": self.turn,
                "session_seconds": [round(self.seconds[0], 3), round(self.seconds[1], 3)]}


Callback = Callable[[LiveVerdict], "Awaitable[None] | None"]


@dataclass
class _Turn:
    index: int
    start: int  # session sample index where the turn's audio starts
    next_window_end: int
    blocked: LiveVerdict | None = None
    windows: set[asyncio.Future[Verdict | None]] = field(default_factory=set)
    #: turn audio judged safe by windows without a gap, from the turn's start
    covered: int = -1
    #: safe spans after a gap (windows shed or still in flight), a bounded few
    later: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.covered = self.start

    def judged_safe(self, start: int, end: int) -> None:
        """Record a safe window; memory stays bounded however long the turn runs."""
        spans = sorted([*self.later, (start, end)])
        self.later = []
        for a, b in spans:
            if a <= self.covered:
                self.covered = max(self.covered, b)
            else:
                self.later.append((a, b))
        del self.later[:-_MAX_LATER]  # forgetting one only ever leaves audio uncovered: fail closed

    def covered_until(self) -> int:
        return self.covered


_MAX_LATER = 16


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
        self._turn: _Turn | None = None
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

    def _new_turn(self) -> _Turn:
        self._turns += 1
        self._ring.clear(self._samples)
        self._turn = _Turn(self._turns, self._samples, self._samples + self._window)
        return self._turn

    def _send_windows(self, turn: _Turn) -> None:
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

    def _window_judged(self, turn: _Turn, start: int, end: int, future: asyncio.Future[Verdict | None]) -> None:
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
        self, gate: asyncio.Future[LiveVerdict | None], turn: _Turn | None, live: LiveVerdict | None
    ) -> None:
        if live is not None:
            self.stats.turns += 1
            if not live.safe and (turn is None or turn.blocked is None):
                self.stats.turns_blocked += 1
        if not gate.done():
            gate.set_result(live)

    def _prepare_turn(
        self, turn: _Turn | None, transcript: str | None, media: tuple[MediaPart, ...]
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
        self, turn: _Turn | None, ask: Ask, index: int, span: tuple[float, float], held_from: int
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

    async def _uncovered(self, turn: _Turn, held_from: int) -> Verdict:
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
        answer = _Answer(self, on_block)

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
        answer = _Answer(self, on_block)
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


class _Answer:
    """One answer of the agent on its way out: waits for the verdict on the turn it answers,
    counts and reports a block, and sends each window's verdict out with its time."""

    def __init__(self, session: LiveSession, on_block: Callable[[Verdict], Awaitable[None] | None] | None) -> None:
        self.session = session
        self.gate = session._gate  # noqa: SLF001 - the turn this answer replies to
        self.turn = session._turns  # noqa: SLF001
        self.on_block = on_block

    async def turn_allowed(self) -> bool:
        if self.gate is None:
            return True
        live = await self.gate
        return live is None or live.safe

    async def blocked(self, verdict: Verdict) -> None:
        if not await self.turn_allowed():
            return  # the turn it answers was blocked: that refusal is the one
        self.session.stats.outputs_blocked += 1
        if self.on_block is not None:
            result = self.on_block(verdict)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result

    def heard(self, window: Window, verdict: Verdict) -> None:
        now = self.session.now
        self.session._emit(LiveVerdict("output", verdict, (now, now), self.turn, stage="output"))  # noqa: SLF001


class LiveOutput(Generic[T]):
    """The push rail of one answer: a :class:`~omniguard_plugins.doors.RailSession` whose
    ``feed`` / ``finish`` never raise the cancellation of a window check the block itself
    cancelled (a window settled after the block: ``RailSession`` can store its
    ``CancelledError``); a real cancellation of the caller still propagates."""

    def __init__(self, session: RailSession[T]) -> None:
        self.session = session

    @property
    def rail(self) -> StreamRail[T]:
        return self.session.rail

    @property
    def blocked(self) -> Verdict | None:
        return self.session.blocked

    async def feed(self, chunk: T) -> None:
        try:
            await self.session.feed(chunk)
        except asyncio.CancelledError:
            self._reraise_unless_block()

    async def finish(self) -> Verdict | None:
        try:
            return await self.session.finish()
        except asyncio.CancelledError:
            self._reraise_unless_block()
            return self.session.blocked

    def cancel(self) -> None:
        self.session.cancel()

    def _reraise_unless_block(self) -> None:
        task = asyncio.current_task()
        if self.session.blocked is None or (task is not None and task.cancelling()):
            raise  # noqa: PLE0704 - re-raised from the caller's except block
