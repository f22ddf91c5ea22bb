"""LangChain's side of the core stream rail: how to read its chunks, how to judge a window, what
a refusal looks like. The rail itself (hold back, pipelined windows, final check, block) is
:mod:`omniguard_plugins.streaming`; ``guard`` and the agent middleware both drive it from here.

A chunk's text is its text and reasoning blocks plus its tool-call argument deltas (the model
can say in a tool call what it may not say in prose); image/audio/video blocks are its media.
A chunk the rail cannot read (a parser's dict, an unknown block) waits for the final check,
which judges the whole output: every content block, reasoning and tool call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.runnables import RunnableConfig

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, MediaPart, Part, Text, Turn
from omniguard_plugins.errors import ContentError
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window

from ._convert import has_content, parts_from_blocks, to_conversation
from ._judging import Check, arecord, arun_checks, format_violation, make_check, record, violation
from ._shapes import refusal_like

__all__ = ["GuardRun", "OutputRail", "RailSettings", "accumulate", "has_output", "message_parts", "read_chunk"]

_CALLS = frozenset({"tool_call", "tool_call_chunk", "invalid_tool_call", "server_tool_call", "server_tool_call_chunk"})


def read_chunk(chunk: Any) -> tuple[str | None, tuple[MediaPart, ...]]:
    """What a stream chunk adds: its text (None: unreadable, held for the final check) and media."""
    if isinstance(chunk, str):
        return chunk, ()
    if not isinstance(chunk, BaseMessage):
        return None, ()
    if isinstance(chunk.content, str) and not chunk.additional_kwargs and not getattr(chunk, "tool_call_chunks", None):
        return chunk.content, ()  # the common token: skip the block translation (per-chunk cost)
    pieces: list[str] = []
    media: list[MediaPart] = []
    try:
        for block in chunk.content_blocks:
            kind = block.get("type")
            if kind == "text":
                pieces.append(block.get("text") or "")
            elif kind == "reasoning":  # shown by many chat UIs: judged like text
                pieces.append(block.get("reasoning") or "")  # type: ignore[arg-type]
            elif kind not in _CALLS:
                media.extend(p for p in parts_from_blocks([block]) if not isinstance(p, Text))
    except ContentError:
        return None, ()
    if isinstance(chunk, AIMessageChunk):
        for call in chunk.tool_call_chunks:
            pieces.append((f"{call['name']} " if call.get("name") else "") + (call.get("args") or ""))
    elif isinstance(chunk, AIMessage):
        pieces.append(_calls_text(chunk))
    return "".join(pieces), tuple(media)


def _calls_text(message: AIMessage) -> str:
    return "\n".join(f"{c['name']} {json.dumps(c['args'], ensure_ascii=False)}" for c in message.tool_calls if c["args"])


def message_parts(message: BaseMessage) -> tuple[Part, ...]:
    """A whole message as the judge reads it: its content blocks, then its reasoning and the
    arguments of its tool calls as text."""
    parts = parts_from_blocks(message.content_blocks)
    extra = [str(b.get("reasoning") or "") for b in message.content_blocks if b.get("type") == "reasoning"]
    if isinstance(message, AIMessage):
        extra.append(_calls_text(message))
    text = "\n\n".join(t for t in extra if t.strip())
    return parts + ((Text(text),) if text else ())


def has_output(message: BaseMessage) -> bool:
    """Whether a reply says anything to judge: content, reasoning, or tool-call arguments."""
    return has_content(message) or any(b.get("type") == "reasoning" for b in message.content_blocks) or (
        isinstance(message, AIMessage) and bool(_calls_text(message)))


def accumulate(acc: Any, chunk: Any) -> Any:
    """Chunks added up the LangChain way (str, message chunks); a value that cannot be added
    replaces the total (cumulative parsers, like JSON, stream whole values)."""
    if acc is None:
        return chunk
    try:
        return acc + chunk
    except TypeError:
        return chunk


def _whole(chunks: Sequence[Any]) -> Any:
    """All chunks as one output value, in linear time for str and message chunks."""
    if not chunks:
        return None
    if all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    if isinstance(chunks[0], BaseMessageChunk) and all(isinstance(c, BaseMessageChunk) for c in chunks):
        return chunks[0] + list(chunks[1:]) if len(chunks) > 1 else chunks[0]
    out = None
    for chunk in chunks:
        out = accumulate(out, chunk)
    return out


@dataclass
class OutputRail:
    """The output side of one LangChain run on the core rail: reads the chunks, judges each
    window in the context of the user's turn, and remembers which check blocked.

    ``streaming=False`` (invoke) reads the output as one opaque chunk: no windows, only the
    final check. ``unwrap`` turns a source item into the chunk to read (a chat model's
    ``ChatGenerationChunk`` into its message). Verdict events go out in the caller's thread
    (sync: :meth:`recorded`) or task (async: inside :meth:`judge`).
    """

    judge: OmniGuard
    stream: StreamSettings
    user: tuple[Turn, ...] = ()
    policy: Any = None
    mode: str | None = None
    #: the violation message when the door answers with one (it may ask for a critique)
    template: str | None = None
    config: RunnableConfig | None = None
    is_async: bool = False
    streaming: bool = True
    unwrap: Callable[[Any], Any] | None = None
    rail: StreamRail[Any] = field(init=False)
    chunks: list[Any] = field(init=False, default_factory=list)
    _checks: dict[int, Check] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rail = StreamRail(self.stream, read=self._read)

    def _read(self, item: Any) -> tuple[str | None, tuple[MediaPart, ...]]:
        chunk = self.unwrap(item) if self.unwrap is not None else item
        self.chunks.append(chunk)
        return read_chunk(chunk) if self.streaming else (None, ())

    def check(self, content: Any, build: Callable[[], Conversation]) -> Check:
        return make_check("output", content, build, direction="output", policy=self.policy, mode=self.mode,
                       template=self.template)

    def whole_check(self, output: Any) -> Check:
        """The check of a whole output (the final check, or a reply that did not stream)."""

        def build() -> Conversation:
            if isinstance(output, BaseMessage):
                return Conversation((*self.user, Turn("assistant", message_parts(output))))
            turns = tuple(t for t in to_conversation(output, role="assistant").turns if t.role == "assistant")
            return Conversation((*self.user, *turns))

        return self.check(output, build)

    async def judge_window(self, window: Window) -> Verdict:
        """The rail's judge: one output check per window, through the shared micro-batcher."""
        if window.kind == "final":
            check = self.whole_check(_whole(self.chunks))
        else:
            check = self.check(window.text, lambda: window.conversation(self.user))
        self._checks[window.seq] = check
        verdict = (await arun_checks(self.judge, [check]))[0]
        if self.is_async:
            await arecord("output", window.annotate(verdict), self.config)
        return verdict

    def recorded(self, window: Window, verdict: Verdict) -> None:
        if not self.is_async:
            record("output", verdict, self.config)

    def blocked(self) -> tuple[Check, Verdict] | None:
        """The check that blocked the stream and its verdict, or None."""
        window = self.rail.blocked_window
        if self.rail.blocked is None or window is None:
            return None
        return self._checks[window.seq], self.rail.blocked

    def output(self) -> Any:
        return _whole(self.chunks)


@dataclass(frozen=True)
class RailSettings:
    judge: OmniGuard
    check_input: bool
    check_output: bool
    stream: StreamSettings
    exit_behavior: Literal["error", "end"]
    violation_message: str | None
    policy: Any
    mode: str | None
    #: the wrapped runnable's output type, for a refusal before any chunk was seen
    output_type: Any = None

    @property
    def template(self) -> str | None:
        return self.violation_message if self.exit_behavior != "error" else None


class GuardRun:
    """One run of ``guard(runnable)``: the input check, then the output on an :class:`OutputRail`."""

    def __init__(self, settings: RailSettings, value: Any, streaming: bool, config: RunnableConfig | None = None,
                 is_async: bool = False) -> None:
        self.s = settings
        self.value = value
        self.out = OutputRail(settings.judge, settings.stream, policy=settings.policy, mode=settings.mode,
                              template=settings.template, config=config, is_async=is_async, streaming=streaming)
        self.config = config

    def _input_conversation(self) -> Conversation:
        conversation = to_conversation(self.value, role="user")
        last = conversation.last("user")
        self.out.user = (last,) if last is not None else ()
        return conversation

    def start(self) -> Check | None:
        """The input check, or None when the input rail is off (the user turn is still kept as
        context for the output rail)."""
        if not self.s.check_input:
            try:
                self._input_conversation()
            except ContentError:
                pass
            return None
        return make_check("input", self.value, self._input_conversation, direction="input",
                       policy=self.s.policy, mode=self.s.mode, template=self.s.template)

    def input_refusal(self, check: Check, verdict: Verdict) -> list[Any] | None:
        """None when the input passed; else the refusal to hand out (or raise)."""
        return None if verdict.safe else self._refuse(check, verdict)

    def ending(self) -> list[Any]:
        """After the rail: nothing, or the refusal of a blocked output (or raise)."""
        blocked = self.out.blocked()
        return [] if blocked is None else self._refuse(*blocked)

    def _refuse(self, check: Check, verdict: Verdict) -> list[Any]:
        if self.s.exit_behavior == "error":
            raise violation(check, verdict)
        sample = self.out.chunks[0] if self.out.chunks else self.s.output_type
        return [refusal_like(sample, format_violation(self.s.violation_message, verdict))]
