"""The state of one guarded run, shared by the sync and async loops of :mod:`._guard`.

The loops only move values: they ask this object for the next check, hand its verdict back,
and yield what :meth:`GuardRun.emit` releases. Every decision is made here, once.

Streaming rule: a chunk is held until text covering it has passed a check, so a consumer never
receives text the judge has not seen. Every ``every_chars`` new characters the last
``window_chars`` of the output are judged (windows overlap, so a phrase split across a check
boundary is still seen whole); when the stream ends, the *full* output, media included, is
judged before the rest is released. Streaming is never a way around the output rail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Text, Turn
from omniguard_plugins.errors import ContentError
from omniguard_plugins.streaming import WindowSchedule

from ._convert import to_conversation
from ._judging import Check, format_violation, prepare, violation
from ._shapes import refusal_like

__all__ = ["GuardRun", "RailSettings", "accumulate"]


@dataclass(frozen=True)
class RailSettings:
    judge: OmniGuard
    check_input: bool
    check_output: bool
    window_chars: int
    every_chars: int
    exit_behavior: Literal["error", "end"]
    violation_message: str | None
    policy: Any
    mode: str | None
    #: the wrapped runnable's output type, for a refusal before any chunk was seen
    output_type: Any


def accumulate(acc: Any, chunk: Any) -> Any:
    """Chunks added up the LangChain way (str, message chunks); a value that cannot be added
    replaces the total."""
    if acc is None:
        return chunk
    try:
        return acc + chunk
    except TypeError:
        return chunk  # cumulative parsers (JSON) stream whole values: keep the latest


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return str(value.text)
    try:
        turns = to_conversation(value, role="assistant").turns
    except ContentError:
        return ""
    return "\n\n".join(t.text for t in turns)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, BaseMessage):
        return not value.content
    return isinstance(value, (list, tuple, Mapping)) and not value


class GuardRun:
    """One run of a guarded runnable: input check, chunks, window checks, final check."""

    def __init__(self, settings: RailSettings, value: Any, *, streaming: bool) -> None:
        self.s = settings
        self.value = value
        self.streaming = streaming
        self.done = False
        self._user: Turn | None = None
        self._acc: Any = None
        self._sample: Any = settings.output_type
        self._held: list[Any] = []
        self._ready: list[Any] = []
        self._windows = WindowSchedule(settings.window_chars, settings.every_chars)

    # ----------------------------------------------------------------- what to judge

    def _prepare(self, stage: Literal["input", "output"], content: Any, build: Any) -> Check:
        template = self.s.violation_message if self.s.exit_behavior != "error" else None
        return prepare(self.s.judge, stage, content, build, direction=stage, policy=self.s.policy, mode=self.s.mode,
                       template=template)

    def _input_conversation(self) -> Conversation:
        conversation = to_conversation(self.value, role="user")
        self._user = conversation.last("user")
        return conversation

    def start(self) -> Check | None:
        """The input check, or None when the input rail is off."""
        if not self.s.check_input:
            try:  # still keep the user turn as context for the output rail
                self._input_conversation()
            except ContentError:
                pass
            return None
        return self._prepare("input", self.value, self._input_conversation)

    def _with_context(self, assistant: tuple[Turn, ...]) -> Conversation:
        return Conversation(((self._user,) if self._user is not None else ()) + assistant)

    def push(self, chunk: Any) -> Check | None:
        """Take one output chunk; return a window check when one is due."""
        self._sample = chunk if self._acc is None else self._sample
        self._acc = accumulate(self._acc, chunk)
        self._held.append(chunk)
        if not self.s.check_output:
            self._release()
            return None
        if not self.streaming:
            return None
        text = _text_of(self._acc)
        span = self._windows.due(len(text))
        if span is None:
            return None
        window = text[span[0] : span[1]]
        return self._prepare("output", window, lambda: self._with_context((Turn.assistant(Text(window)),)))

    def finish(self) -> Check | None:
        """The final check over the whole output, or None when there is nothing to judge."""
        if not self.s.check_output or _is_empty(self._acc):
            self._release()
            return None
        output = self._acc

        def build() -> Conversation:
            turns = tuple(t for t in to_conversation(output, role="assistant").turns if t.role == "assistant")
            return self._with_context(turns)

        return self._prepare("output", output, build)

    # ----------------------------------------------------------------- what to do

    def judged(self, check: Check, verdict: Verdict) -> None:
        """Act on a verdict: release what it covers, or stop (raise, or end with a refusal)."""
        if verdict.safe:
            if check.stage == "output":
                self._release()
            return
        self._held.clear()
        self.done = True
        if self.s.exit_behavior == "error":
            raise violation(check, verdict)
        self._ready.append(refusal_like(self._sample, format_violation(self.s.violation_message, verdict)))

    def _release(self) -> None:
        self._ready.extend(self._held)
        self._held.clear()

    def emit(self) -> list[Any]:
        """What may be handed to the consumer now."""
        out, self._ready = self._ready, []
        return out
