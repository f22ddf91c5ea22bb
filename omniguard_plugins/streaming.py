"""The one stream rail: a streamed answer is shown only as far as safe verdicts cover it.

Every door that streams (LangChain ``guard`` and agent middleware, LlamaIndex engines; a server
route the same way) drives a :class:`StreamRail` with :func:`moderate` or :func:`amoderate`; a
door only says how to read its chunk type (``read``), how to judge a :class:`Window`, and what
its refusal looks like. The rules, the same everywhere (``docs/streaming.md`` says what each
setting costs):

- **Windows.** The text is judged in windows of ``window_chars`` that end every ``step_chars``
  characters (at ``step``, ``2*step``, ... of the text, however it was chunked), so neighbours
  overlap by ``window_chars - step_chars`` and a phrase that long is always seen whole once.
- **Release.** A chunk is released once a safe window has seen its text *and* the overlap that
  follows it, i.e. once it ends before the start of the first window not yet judged safe; plus
  ``max_unjudged_chars`` (0 by default: nothing is shown before its verdict). So no released
  byte ever comes from an unsafe window, or from after one.
- **Media.** A chunk carrying media is judged at once (with up to ``window_chars`` of the text
  before it) and released only after that check passed. A chunk whose content the door cannot
  read as text (``read`` gives None for its text) waits for the final check.
- **Final check.** When the source ends, the whole output (all text and media, in order) is
  judged once, always, whatever the windows said; the rest is released only after it *and*
  every window still in flight passed. Windows not yet sent are dropped: the final check sees
  their text.
- **Block.** The first unsafe verdict blocks: nothing more is released, the driver closes the
  source at once, and the door answers with its refusal (``blocked`` holds the verdict).
- **Pipelining.** Windows are judged while the source keeps streaming, at most
  ``max_in_flight`` per stream, through the judge's micro-batcher, so concurrent streams share
  batches. Time to the last byte is the source's time plus about one judge latency.

The rail is a pure state machine (no I/O, no clock); the drivers in :mod:`._stream_drive` move
chunks and verdicts. Work is linear in the output: each window copies at most ``window_chars``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ._stream_drive import Judge, amoderate, background_loop, moderate, output_judge
from .content import Conversation, MediaPart, Part, Text, Turn
from .errors import ConfigError

if TYPE_CHECKING:
    from .verdict import Verdict

__all__ = [
    "Judge",
    "Read",
    "StreamRail",
    "StreamSettings",
    "Window",
    "amoderate",
    "background_loop",
    "moderate",
    "output_judge",
    "read_text",
]

T = TypeVar("T")

#: a chunk that waits for the final check (its content cannot be read as text)
_FINAL = -1


@dataclass(frozen=True)
class StreamSettings:
    """How a stream is judged; the same names in every door.

    ``window_chars``: text each window check sees. ``step_chars``: a new window every this many
    characters (``1 <= step_chars <= window_chars``). Text is shown ``window_chars - step_chars``
    characters behind the newest judged window (the overlap is re-judged with what follows it).
    ``max_unjudged_chars``: how far shown text may run ahead of its verdict (0: not at all).
    ``max_in_flight``: window checks one stream may have waiting at once.
    """

    window_chars: int = 600
    step_chars: int = 200
    max_unjudged_chars: int = 0
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{f.name} must be an int, got {value!r}")
        if self.step_chars < 1 or self.window_chars < self.step_chars:
            raise ConfigError(
                f"need 1 <= step_chars <= window_chars, got step_chars={self.step_chars}, "
                f"window_chars={self.window_chars}: windows must overlap (or touch) so no text falls between them"
            )
        if self.max_unjudged_chars < 0:
            raise ConfigError(f"max_unjudged_chars must be >= 0 (0: nothing shown before its verdict), "
                              f"got {self.max_unjudged_chars}")
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {self.max_in_flight}")


WindowKind = Literal["step", "media", "final"]


@dataclass(frozen=True)
class Window:
    """One check the rail asks for: ``parts`` of the answer between ``start`` and ``end``
    (character offsets of its text). ``kind`` is ``"step"`` (a rolling window), ``"media"`` (a
    chunk with media, with the text before it) or ``"final"`` (the whole output)."""

    kind: WindowKind
    seq: int
    start: int
    end: int
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, Text))

    def conversation(self, context: Sequence[Turn] = ()) -> Conversation:
        """This window as the assistant turn after ``context`` (usually the user's turn)."""
        return Conversation((*context, Turn("assistant", self.parts)))

    def annotate(self, verdict: Verdict) -> Verdict:
        """``verdict`` with this window in its details (``stream_window``, ``stream_check``)."""
        return verdict.with_(details={**verdict.details, "stream_window": (self.start, self.end),
                                      "stream_check": self.kind})


#: what a door says about one chunk: the text it adds (None: content the rail cannot read as
#: text, held for the final check) and the media parts it carries
Read = Callable[[T], "tuple[str | None, Sequence[MediaPart]]"]


def read_text(chunk: object) -> tuple[str | None, Sequence[MediaPart]]:
    """The default ``read``: str chunks are text; anything else waits for the final check."""
    return (chunk if isinstance(chunk, str) else None), ()


class StreamRail(Generic[T]):
    """Holds back a stream of chunks until verdicts cover them; see the module docstring.

    ``read(chunk)`` says what a chunk adds: its text (None: content the rail cannot read, held
    for the final check) and its media parts; it is called once per chunk, in order. Drive it with
    :func:`moderate` / :func:`amoderate`, or by hand: ``push``, submit ``due()``, ``settle``
    each verdict, hand out ``release()``, and ``finish()`` when the source ends.
    """

    def __init__(
        self,
        settings: StreamSettings | None = None,
        *,
        read: Read[T] | None = None,
    ) -> None:
        self.settings = settings or StreamSettings()
        self._read: Read[T] = read or read_text  # type: ignore[assignment]
        #: every verdict so far, in arrival order (audit); each has details["stream_window"]
        self.verdicts: list[Verdict] = []
        #: the verdict that blocked the stream, once one did
        self.blocked: Verdict | None = None
        self.blocked_window: Window | None = None
        self.finished = False
        self._held: deque[tuple[T, int, int | None]] = deque()  # (chunk, text end, window it waits for)
        self._order: list[str | MediaPart] = []  # the whole output, for the final check
        self._opaque = False
        self._length = 0
        self._tail = ""  # text from _tail_start on: at least the last window_chars
        self._tail_start = 0
        self._next_end = self.settings.step_chars
        self._queue: deque[Window] = deque()
        self._in_flight: set[int] = set()
        self._seq = 0
        self._safe_steps: set[int] = set()
        self._covered = 0  # steps 1.._covered all judged safe
        self._media_ok: set[int] = set()
        self._final_ok = False

    # ------------------------------------------------------------------ input

    def push(self, chunk: T) -> None:
        """Take the next chunk from the source (held until verdicts cover it)."""
        if self.blocked is not None:
            return
        if self.finished:
            raise ConfigError("the stream already finished; start a new StreamRail")
        text, media = self._read(chunk)
        media = tuple(media)
        waits: int | None = None
        if text is None:
            self._opaque, waits = True, _FINAL
        elif text:
            self._order.append(text)
            self._tail += text
            self._length += len(text)
            self._plan_steps()
        if media:
            self._order.extend(media)
            waits = self._plan_media(media) if waits is None else waits
        self._held.append((chunk, self._length, waits))

    def _new(self, kind: WindowKind, start: int, end: int, parts: tuple[Part, ...]) -> Window:
        self._seq += 1
        return Window(kind, self._seq, start, end, parts)

    def _plan_steps(self) -> None:
        s = self.settings
        while self._length >= self._next_end:
            start = max(0, self._next_end - s.window_chars)
            text = self._tail[start - self._tail_start : self._next_end - self._tail_start]
            self._queue.append(self._new("step", start, self._next_end, (Text(text),)))
            self._next_end += s.step_chars
        keep = max(0, self._length - s.window_chars)  # the next window and a media check need no more
        if keep - self._tail_start > s.window_chars:  # trim now and then: linear overall
            self._tail = self._tail[keep - self._tail_start :]
            self._tail_start = keep

    def _plan_media(self, media: tuple[MediaPart, ...]) -> int:
        before = self._tail[-self.settings.window_chars :]
        parts: tuple[Part, ...] = ((Text(before),) if before.strip() else ()) + media
        window = self._new("media", self._length - len(before), self._length, parts)
        self._queue.appendleft(window)  # media is judged first: it holds everything after it
        return window.seq

    def due(self) -> list[Window]:
        """Windows to judge now (at most ``max_in_flight`` waiting at once)."""
        out: list[Window] = []
        while self._queue and len(self._in_flight) < self.settings.max_in_flight and self.blocked is None:
            window = self._queue.popleft()
            self._in_flight.add(window.seq)
            out.append(window)
        return out

    def finish(self, *, judge_whole: bool | None = None) -> list[Window]:
        """The source ended: the final check of the whole output (empty when there is nothing
        to judge: no text but whitespace, no media, nothing opaque; ``judge_whole`` overrides)."""
        if self.finished:
            return []
        self.finished = True
        self._queue.clear()
        has_content = self._opaque or any(not isinstance(p, str) or p.strip() for p in self._order)
        if self.blocked is not None or not (has_content if judge_whole is None else judge_whole):
            self._final_ok = True
            return []
        window = self._new("final", 0, self._length, self._whole_parts())
        self._in_flight.add(window.seq)
        return [window]

    def _whole_parts(self) -> tuple[Part, ...]:
        parts: list[Part] = []
        run: list[str] = []
        for item in self._order:
            if isinstance(item, str):
                run.append(item)
                continue
            if run:
                parts.append(Text("".join(run)))
                run = []
            parts.append(item)
        if run:
            parts.append(Text("".join(run)))
        return tuple(parts)

    # ------------------------------------------------------------------ verdicts

    def settle(self, window: Window, verdict: Verdict) -> Verdict:
        """Record the verdict on ``window`` (returned with the window in its details); an
        unsafe one blocks the stream for good."""
        self._in_flight.discard(window.seq)
        verdict = window.annotate(verdict)
        if self.blocked is not None:
            return verdict  # a late verdict after a block changes nothing
        self.verdicts.append(verdict)
        if not verdict.safe:
            self.blocked, self.blocked_window = verdict, window
            self._queue.clear()
            self._held.clear()
        elif window.kind == "step":
            self._safe_steps.add(window.end // self.settings.step_chars)
            while self._covered + 1 in self._safe_steps:
                self._covered += 1
        elif window.kind == "media":
            self._media_ok.add(window.seq)
        else:
            self._final_ok = True
        return verdict

    # ------------------------------------------------------------------ output

    @property
    def done(self) -> bool:
        """Nothing more will be released: blocked, or finished with every verdict in."""
        return self.blocked is not None or (self.finished and self._final_ok and not self._in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _frontier(self) -> float:
        if self.finished and self._final_ok and not self._in_flight:
            return math.inf
        s = self.settings
        next_start = (self._covered + 1) * s.step_chars - s.window_chars  # first window not known safe
        return max(0, next_start) + s.max_unjudged_chars

    def release(self) -> list[T]:
        """Chunks that may be shown now, in order (each exactly once)."""
        if self.blocked is not None:
            return []
        frontier = self._frontier()
        out: list[T] = []
        while self._held:
            chunk, end, waits = self._held[0]
            if frontier != math.inf and (end > frontier or (waits is not None and waits not in self._media_ok)):
                break
            out.append(self._held.popleft()[0])
        return out

    @property
    def text(self) -> str:
        """All text pushed so far (what the source said, shown or not)."""
        return "".join(p for p in self._order if isinstance(p, str))
