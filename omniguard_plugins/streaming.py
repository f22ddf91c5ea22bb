"""Moderate a streamed answer while it streams: a rolling window every N characters, then a
final check of the whole text.

Framework-free, so every adapter (LlamaIndex, LangChain, the server) cuts streams the same way::

    moderator = StreamModerator(judge, context="the user's question")
    for chunk in llm_stream:
        if moderator.feed(chunk) is not None:      # the window just judged is unsafe
            break
        show(moderator.take())                     # text a passed check has covered
    else:
        if moderator.finish() is None:
            show(moderator.take())

With ``hold_back=True`` (the default) text is released only once a passed check covers it, so
nothing unjudged reaches the user; ``hold_back=False`` releases text as it arrives and only cuts
the rest of the stream. ``feed``/``afeed`` and ``finish``/``afinish`` share one implementation:
each asks :meth:`_plan` for the check to run (if any) and hands its verdict to :meth:`_settle`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .content import Conversation, PartLike, Turn, to_parts
from .errors import ConfigError

if TYPE_CHECKING:
    from .judge import OmniGuard
    from .policy import Policy
    from .verdict import Mode, Verdict

__all__ = ["StreamModerator", "WindowSchedule"]


@dataclass
class WindowSchedule:
    """When a growing text is judged, and which tail: the last ``window_chars`` characters each
    time ``every_chars`` new ones have arrived. ``every_chars <= window_chars``, so windows
    overlap and a phrase split across a check boundary is still seen whole. Every streaming
    rail (this module's :class:`StreamModerator`, the LangChain ``guard``) cuts text this way."""

    window_chars: int
    every_chars: int
    #: end of the last window handed out
    checked_to: int = 0

    def __post_init__(self) -> None:
        if self.every_chars < 1 or self.window_chars < self.every_chars:
            raise ConfigError(
                f"need 1 <= every_chars <= window_chars, got every_chars={self.every_chars}, "
                f"window_chars={self.window_chars}: windows must overlap so no phrase falls between them"
            )

    def due(self, length: int) -> tuple[int, int] | None:
        """The (start, end) span to judge now that the text is ``length`` long, or None."""
        if length - self.checked_to < self.every_chars:
            return None
        self.checked_to = length
        return max(0, length - self.window_chars), length


class StreamModerator:
    """Judges a growing answer in overlapping windows; remembers the verdict that blocked it.

    ``context`` is what the answer replies to (the user's turn: a str, parts, or a
    Conversation); every check is an output check of the window in that context.
    ``window_chars`` is how much of the tail each check sees; ``every_chars`` how much new text
    triggers the next check (``every_chars <= window_chars``, so windows overlap and a phrase
    split across two chunks is still seen whole).
    """

    def __init__(
        self,
        judge: OmniGuard | None = None,
        *,
        window_chars: int = 1000,
        every_chars: int = 200,
        context: Conversation | PartLike | Sequence[PartLike] | None = None,
        hold_back: bool = True,
        policy: Policy | Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> None:
        self._schedule = WindowSchedule(window_chars, every_chars)
        self._judge = judge
        self.window_chars = window_chars
        self.every_chars = every_chars
        self.hold_back = hold_back
        self.policy = policy
        self.mode = mode
        self._context = _context_turns(context)
        self.text = ""
        #: the verdict that blocked the stream, once one did
        self.verdict: Verdict | None = None
        #: every verdict so far, in order (audit)
        self.verdicts: list[Verdict] = []
        self.finished = False
        self._last_start = 0  # start of the last judged window
        self._safe_to = 0  # text[:_safe_to] is covered by passed checks
        self._taken = 0  # text[:_taken] was handed out by take()

    # ------------------------------------------------------------------ public API

    @property
    def judge(self) -> OmniGuard:
        if self._judge is None:
            from .judge import OmniGuard

            self._judge = OmniGuard.shared()
        return self._judge

    @property
    def blocked(self) -> bool:
        return self.verdict is not None

    def feed(self, chunk: str) -> Verdict | None:
        """Add a chunk; judge the window when enough new text came. Returns the blocking
        verdict (stop streaming; also on every call after a block) or None (go on)."""
        plan = self._plan(chunk, final=False)
        return self._settle(plan, self.judge.check(**plan[0]) if plan else None)

    async def afeed(self, chunk: str) -> Verdict | None:
        plan = self._plan(chunk, final=False)
        return self._settle(plan, await self.judge.acheck(**plan[0]) if plan else None)

    def finish(self) -> Verdict | None:
        """The stream ended: judge the whole text (unless the last window already covered
        exactly all of it). Returns the blocking verdict or None."""
        plan = self._plan("", final=True)
        return self._settle(plan, self.judge.check(**plan[0]) if plan else None)

    async def afinish(self) -> Verdict | None:
        plan = self._plan("", final=True)
        return self._settle(plan, await self.judge.acheck(**plan[0]) if plan else None)

    @property
    def released(self) -> str:
        """The text take() has handed out so far (what the user has seen)."""
        return self.text[: self._taken]

    def take(self) -> str:
        """Text that may be shown now and has not been taken yet."""
        end = self._safe_to if self.hold_back else len(self.text)
        if self.blocked:
            end = min(end, self._safe_to)
        out = self.text[self._taken : end] if end > self._taken else ""
        self._taken = max(self._taken, end)
        return out

    # ------------------------------------------------------------------ one implementation

    def _plan(self, chunk: str, *, final: bool) -> tuple[dict[str, Any], tuple[int, int]] | None:
        """Append ``chunk``; return (check kwargs, window span) when a check is due."""
        if self.blocked:
            return None
        if not isinstance(chunk, str):
            raise ConfigError(f"stream chunks must be str, got {type(chunk).__name__}")
        if self.finished:
            raise ConfigError("the stream already finished; start a new StreamModerator")
        self.text += chunk
        end = len(self.text)
        if final:
            self.finished = True
            last_covered_all = bool(self.verdicts) and self._schedule.checked_to == end and self._last_start == 0
            if last_covered_all or not self.text.strip():
                self._safe_to = end
                return None
            start = 0
        else:
            span = self._schedule.due(end)
            if span is None:
                return None
            start = span[0]
        self._last_start = start
        return self._request(self.text[start:end]), (start, end)

    def _request(self, window: str) -> dict[str, Any]:
        turns = self._context + (Turn("assistant", to_parts(window)),)
        return {"conversation": Conversation(turns), "direction": "output", "policy": self.policy, "mode": self.mode}

    def _settle(self, plan: tuple[dict[str, Any], tuple[int, int]] | None, verdict: Verdict | None) -> Verdict | None:
        if plan is None or verdict is None:
            return self.verdict  # None, or the verdict that already blocked this stream
        start, end = plan[1]
        verdict = verdict.with_(details={**verdict.details, "stream_window": (start, end)})
        self.verdicts.append(verdict)
        if verdict.safe:
            self._safe_to = max(self._safe_to, end)
            return None
        self.verdict = verdict
        return verdict


def _context_turns(context: Any) -> tuple[Turn, ...]:
    if context is None:
        return ()
    if isinstance(context, Conversation):
        return context.turns
    parts = to_parts(context)
    return (Turn("user", parts),) if parts else ()
