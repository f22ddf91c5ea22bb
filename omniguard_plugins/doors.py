"""The contract between the judge and every door, written once.

A door (an adapter, a server route, a live session) does two things of its own: it converts its
framework's shapes into a :class:`~omniguard_plugins.content.Conversation`, and it maps its
framework's vocabulary onto :class:`Blocking`. Everything else it needs is here:

- :class:`Ask`: one check as asked (what to judge, at which stage, under which settings). Every
  door builds these; nobody builds ``check()`` keyword dicts by hand.
- :class:`Blocking` and :meth:`Blocking.decide`: the one block decision. A verdict and the
  door's settings give a :class:`Decision` (pass, refuse, replace, drop, annotate), or raise
  :class:`~omniguard_plugins.errors.GuardViolation`.
- :class:`VerdictSummary` and :func:`summarize`: the one JSON-ready view of a verdict that
  leaves the process (HTTP bodies and headers, framework metadata, events, eval rows, the CLI).
- :class:`RailSession`: a push driver for the stream rail, for doors that are handed chunks
  (pipecat frames, LiveKit nodes, WebSocket messages) instead of pulling an iterator.
- :func:`render_tool_call`: one rendering of a tool call for the judge, so the same call gets
  the same verdict through every door.

| stage    | the judge's direction | what is judged                                          |
|----------|-----------------------|---------------------------------------------------------|
| input    | input                 | the user's message, before the model reads it           |
| output   | output                | the model's answer (text, reasoning, tool calls, media) |
| tool     | input                 | a tool result or retrieved content the model will read  |
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

from ._stream_drive import Judge, _Pending
from .content import Audio, Conversation, Image, Part, Text, Video
from .errors import ConfigError, GuardViolation
from .policy import Policy
from .prompt import Direction
from .rails import DEFAULT_REFUSAL, STAGES, Stage, refusal_text
from .verdict import Evidence, Verdict

if TYPE_CHECKING:
    from .streaming import StreamRail, Window

__all__ = [
    "DEFAULT_REFUSAL",
    "STAGES",
    "Action",
    "Ask",
    "Blocking",
    "Decision",
    "RailSession",
    "Stage",
    "VerdictSummary",
    "refusal_text",
    "render_tool_call",
    "summarize",
    "violation",
]

T = TypeVar("T")

#: a callable that converts a framework's message into a Conversation; called inside the check,
#: so a conversion error becomes a verdict under ``on_error`` like any other failure
ConversationBuilder = Callable[[], Conversation]


# ---------------------------------------------------------------------- the request


@dataclass(frozen=True)
class Ask:
    """One check as a door asks it. ``conversation`` may be a builder (called inside the check,
    so a conversion failure is decided by ``on_error``); ``user=`` / ``assistant=`` are the
    short form. ``stage`` picks the judge's direction (see the table above); without it the
    direction follows the last turn. ``None`` settings take the judge's configuration."""

    conversation: Conversation | ConversationBuilder | None = None
    user: Any = None
    assistant: Any = None
    stage: Stage | None = None
    policy: Policy | Mapping[str, Any] | None = None
    mode: Literal["verdict", "critique", "score"] | None = None
    explain: bool | None = None
    localize: bool | None = None
    #: explicit direction for callers that speak directions, not stages (``check()``'s keyword)
    direction: Direction | None = None

    def __post_init__(self) -> None:
        if self.stage is not None and self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.direction is not None and self.direction not in ("input", "output"):
            raise ConfigError(f"direction must be 'input' or 'output', got {self.direction!r}")

    @property
    def judged_direction(self) -> Direction | None:
        """The direction the judge checks in: explicit, else the stage's, else None (inferred)."""
        if self.direction is not None:
            return self.direction
        return STAGES[self.stage] if self.stage is not None else None


# ---------------------------------------------------------------------- the decision

#: what a door does with a blocked verdict: raise GuardViolation, answer with the refusal instead
#: of the whole reply, put the refusal where the content was, drop the content, or keep it marked
Action = Literal["raise", "refuse", "replace", "drop", "annotate"]
_ACTIONS = frozenset(get_args(Action))


@dataclass(frozen=True)
class Decision:
    """What a door does with one verdict. ``action`` is ``"pass"`` for allowed content."""

    action: Literal["pass", "refuse", "replace", "drop", "annotate"]
    verdict: Verdict
    stage: Stage
    #: the refusal to show (``refuse`` / ``replace``), else None
    text: str | None = None

    @property
    def allowed(self) -> bool:
        return self.action == "pass"

    @property
    def blocked(self) -> bool:
        return not self.allowed


@dataclass(frozen=True)
class Blocking:
    """How a door blocks: one ``action`` and one refusal ``template`` (``{categories}`` and
    ``{critique}`` are filled from the verdict). Each adapter maps its own vocabulary onto it in
    one table (LangChain ``exit_behavior``, LlamaIndex ``on_block`` / ``on_unsafe``)."""

    action: Action = "refuse"
    template: str | None = None

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ConfigError(f"block action must be one of {', '.join(sorted(_ACTIONS))}, got {self.action!r}")

    @property
    def explain(self) -> bool | None:
        """Ask the judge for a critique of unsafe verdicts only when the refusal shows it."""
        return True if self.template and "{critique}" in self.template else None

    def refusal(self, verdict: Verdict) -> str:
        return refusal_text(verdict, self.template)

    def decide(self, verdict: Verdict, stage: Stage, content: Any = None) -> Decision:
        """Pass a safe verdict; otherwise act on it. ``raise`` raises :func:`violation`."""
        if verdict.safe:
            return Decision("pass", verdict, stage)
        if self.action == "raise":
            raise violation(verdict, stage, content)
        text = self.refusal(verdict) if self.action in ("refuse", "replace") else None
        return Decision(self.action, verdict, stage, text)


def violation(verdict: Verdict, stage: Stage, content: Any = None) -> GuardViolation:
    """The exception a door raises for a block: one line saying where and why."""
    return GuardViolation(summarize(verdict, stage).blocked_message(), stage=stage, verdict=verdict, content=content)


# ---------------------------------------------------------------------- the verdict, outward


@dataclass(frozen=True)
class VerdictSummary:
    """A verdict as it leaves the process: JSON-ready, the same fields through every door."""

    label: str
    safe: bool
    categories: tuple[str, ...] = ()
    category_names: tuple[str, ...] = ()
    score: float | None = None
    error: str | None = None
    critique: str | None = None
    stage: Stage | None = None
    direction: str = "input"
    mode: str = "verdict"
    latency_ms: float = 0.0
    cached: bool = False
    evidence: tuple[Evidence, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "safe": self.safe,
            "categories": list(self.categories),
            "category_names": list(self.category_names),
            "score": self.score,
            "error": self.error,
            "critique": self.critique,
            "stage": self.stage,
            "direction": self.direction,
            "mode": self.mode,
            "latency_ms": round(self.latency_ms, 3),
            "cached": self.cached,
            "evidence": [e.to_json() for e in self.evidence],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerdictSummary:
        """Read what :meth:`to_json` wrote (a remote judge's answer). A body without a label
        or a ``safe`` flag is not a verdict: ConfigError."""
        if not isinstance(data, Mapping) or "label" not in data:
            raise ConfigError("a verdict summary needs at least 'label'")
        label = str(data["label"])
        safe = data.get("safe")
        if not isinstance(safe, bool):
            safe = label == "safe"
        return cls(
            label=label,
            safe=safe,
            categories=tuple(str(c) for c in data.get("categories") or ()),
            category_names=tuple(str(c) for c in data.get("category_names") or ()),
            score=_float_or_none(data.get("score")),
            error=data.get("error"),
            critique=data.get("critique"),
            stage=data.get("stage") if data.get("stage") in STAGES else None,
            direction=str(data.get("direction") or "input"),
            mode=str(data.get("mode") or "verdict"),
            latency_ms=float(data.get("latency_ms") or 0.0),
            cached=bool(data.get("cached", False)),
            evidence=tuple(Evidence.from_json(e) for e in data.get("evidence") or ()),
        )

    def to_verdict(self, policy: Policy | None = None) -> Verdict:
        """The summary as a Verdict again (a remote judge's answer used in process)."""
        from .policy import categories_from

        chosen = policy or Policy.default()
        return Verdict(safe=self.safe, categories=categories_from(chosen, self.categories), critique=self.critique,
                       score=self.score, error=self.error, latency_ms=self.latency_ms, direction=self.direction,
                       mode=self.mode, cached=self.cached, evidence=self.evidence)

    def header(self) -> str:
        """``safe``, ``unsafe; S1,S9`` or ``error; <kind>``: one HTTP header line."""
        if self.label == "error":
            return f"error; {(self.error or 'error').split(':', 1)[0]}"
        codes = ",".join(self.categories)
        return f"{self.label}; {codes}" if codes else self.label

    def blocked_message(self) -> str:
        """The one-line reason a door gives when it blocks (exceptions, error events, logs)."""
        where = f"the {self.stage}" if self.stage else f"the {self.direction}"
        return f"OmniGuard blocked {where}: {self._head()}"

    def _head(self) -> str:
        if self.error:
            head = f"error ({self.error}) -> {'allowed' if self.safe else 'blocked'}"
        else:
            head = "safe" if self.safe else "unsafe"
        if self.categories:
            names = self.category_names or self.categories
            head += ": " + ", ".join(f"{c} {n}" if n != c else c for c, n in zip(self.categories, names))
        return head


def summarize(verdict: Verdict, stage: Stage | None = None) -> VerdictSummary:
    """The verdict as it leaves the process."""
    return VerdictSummary(
        label=verdict.label,
        safe=verdict.safe,
        categories=verdict.category_codes,
        category_names=verdict.category_names,
        score=verdict.score,
        error=verdict.error,
        critique=verdict.critique,
        stage=stage,
        direction=verdict.direction,
        mode=verdict.mode,
        latency_ms=verdict.latency_ms,
        cached=verdict.cached,
        evidence=verdict.evidence,
    )


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- tool calls

_DATA_URI = re.compile(r"^data:(image|audio|video)/[\w.+-]+;base64,", re.I)
_MEDIA_CLASS: Mapping[str, type[Image] | type[Audio] | type[Video]] = {"image": Image, "audio": Audio, "video": Video}
#: a base64 string shorter than this is read as text (an id, a token), never sniffed as media
_MIN_BASE64_MEDIA = 64


def render_tool_call(name: str, arguments: Any) -> tuple[Part, ...]:
    """A tool call as the judge reads it, the same through every door: ``name {json args}``,
    with media found in the arguments (``data:`` URIs, or long base64 that sniffs as an image,
    audio or video) taken out as media parts of ``origin="base64"``/``"url"`` and named in the
    text as ``<image 1>`` and so on. Nothing in the arguments is ever read as a path or fetched.

    ``arguments`` may be a mapping or the JSON string a wire format carries (a string that is
    not JSON, e.g. a partial stream, is judged as written)."""
    if isinstance(arguments, (str, bytes)):
        text = arguments.decode("utf-8", "replace") if isinstance(arguments, bytes) else arguments
        try:
            arguments = json.loads(text) if text.strip() else {}
        except ValueError:
            return (Text(f"{name} {text}".strip()),)
    media: list[Image | Audio | Video] = []
    cleaned = _take_media(arguments, media)
    args_text = json.dumps(cleaned, ensure_ascii=False, sort_keys=False) if cleaned not in ({}, None) else ""
    return (Text(f"{name} {args_text}".strip()), *media)


def _take_media(value: Any, media: list[Image | Audio | Video]) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _take_media(v, media) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_take_media(v, media) for v in value]
    if isinstance(value, str):
        part = _media_in(value)
        if part is not None:
            media.append(part)
            return f"<{part.kind} {sum(1 for m in media if m.kind == part.kind)}>"
    return value


def _media_in(value: str) -> Image | Audio | Video | None:
    match = _DATA_URI.match(value)
    if match:
        return _MEDIA_CLASS[match.group(1).lower()](value, origin="url")
    if len(value) < _MIN_BASE64_MEDIA or not _looks_base64(value):
        return None
    from .media import sniff_base64_kind

    kind = sniff_base64_kind(value)
    if kind is None or kind not in _MEDIA_CLASS:
        return None
    return _MEDIA_CLASS[kind](value, origin="base64")


def _looks_base64(value: str) -> bool:
    try:
        base64.b64decode(value[:64], validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# ---------------------------------------------------------------------- the push driver

OnRelease = Callable[[list[T]], "Awaitable[None] | None"]
OnBlock = Callable[[Verdict], "Awaitable[None] | None"]


class RailSession(Generic[T]):
    """Drive a :class:`~omniguard_plugins.streaming.StreamRail` with chunks as they are pushed.

    The same rules as :func:`~omniguard_plugins.streaming.amoderate` (windows judged while
    chunks keep coming, released in order as safe verdicts cover them, a block stops
    everything), for doors that are *handed* chunks: ``await feed(chunk)`` for each,
    ``await finish()`` at the end. Released chunks go to ``on_release`` (awaited, in order,
    never concurrently) or, without one, to :meth:`take`. ``on_block`` hears the blocking
    verdict once, as soon as it arrives, even between two feeds. Call from one event loop.
    """

    def __init__(
        self,
        rail: StreamRail[T],
        judge: Judge,
        *,
        on_release: OnRelease[T] | None = None,
        on_block: OnBlock | None = None,
        on_verdict: Callable[[Window, Verdict], None] | None = None,
    ) -> None:
        self.rail = rail
        self._judge = judge
        self._on_release = on_release
        self._on_block = on_block
        self._pending = _Pending(rail, self._start, on_verdict)
        self._lock = asyncio.Lock()
        self._released: list[T] = []
        self._error: BaseException | None = None
        self._told_block = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def blocked(self) -> Verdict | None:
        return self.rail.blocked

    @property
    def done(self) -> bool:
        return self.rail.done

    def take(self) -> list[T]:
        """What was released since the last call (when no ``on_release`` was given)."""
        out, self._released = self._released, []
        return out

    async def feed(self, chunk: T) -> None:
        """Push one chunk: windows it completes go to the judge at once; whatever is released
        now is delivered before this returns. After a block, chunks are dropped."""
        self._raise_error()
        async with self._lock:
            if self.rail.blocked is not None or self.rail.finished:
                return
            self.rail.push(chunk)
            released = [*self._pending.settle(self._pending.ready()), *self.rail.release()]
            await self._deliver(released)

    async def finish(self) -> Verdict | None:
        """The source ended: judge the whole output, wait for every verdict, deliver the rest.
        Returns the blocking verdict, or None when everything was released."""
        self._raise_error()
        async with self._lock:
            if not self.rail.finished:
                self._pending.send(self.rail.finish())
                await self._deliver(self.rail.release())
        while self._pending.waiting and self.rail.blocked is None:
            await asyncio.wait(list(self._pending.waiting), return_when=asyncio.FIRST_COMPLETED)
            await self._settle_ready()
        self._raise_error()
        return self.rail.blocked

    def cancel(self) -> None:
        """Stop judging (the source was interrupted): in-flight checks are cancelled."""
        self._pending.cancel()
        self._pending.waiting.clear()
        for task in list(self._tasks):
            task.cancel()

    # -------------------------------------------------------------- internals

    def _start(self, window: Window) -> asyncio.Future[Verdict]:
        future = asyncio.ensure_future(self._judge(window))
        future.add_done_callback(self._verdict_arrived)
        return future

    def _verdict_arrived(self, future: asyncio.Future[Verdict]) -> None:
        if future.cancelled() or future not in self._pending.waiting:
            return
        task = asyncio.get_running_loop().create_task(self._settle_ready())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_ready(self) -> None:
        async with self._lock:
            try:
                released = self._pending.settle(self._pending.ready())
            except BaseException as exc:  # noqa: BLE001 - a judge that raises (on_error="raise") ends the session
                self._error = exc
                self._pending.cancel()
                self._pending.waiting.clear()
                return
            await self._deliver(released)

    async def _deliver(self, released: list[T]) -> None:
        if released:
            if self._on_release is None:
                self._released.extend(released)
            else:
                result = self._on_release(released)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
        if self.rail.blocked is not None and not self._told_block:
            self._told_block = True
            self._pending.cancel()
            self._pending.waiting.clear()  # a settle already scheduled must not read a cancelled check
            if self._on_block is not None:
                result = self._on_block(self.rail.blocked)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
