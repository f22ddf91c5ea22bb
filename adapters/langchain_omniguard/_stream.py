"""LangChain's side of the core stream rail: how to read its chunks, how to judge a window, what
a refusal looks like. The rail itself (hold back, pipelined windows, final check, block) is
:mod:`omniguard_plugins.streaming`; ``guard`` and the agent middleware both drive it from here.

A chunk's text is its text and reasoning blocks plus its tool-call argument deltas (the model
can say in a tool call what it may not say in prose); image/audio/video blocks are its media.
A chunk the rail cannot read (a parser's dict, an unknown block) waits for the final check,
which judges the whole output: every content block, reasoning and tool call.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.runnables import RunnableConfig

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Audio, Conversation, MediaPart, Part, Text, Turn
from omniguard_plugins.doors import render_tool_call
from omniguard_plugins.errors import ContentError
from omniguard_plugins.media import sniff_base64_kind, wav_bytes
from omniguard_plugins.streaming import Read, StreamRail, StreamSettings, Window

from ._convert import has_content, parts_from_blocks, to_conversation
from ._judging import AskSettings, Check, arecord, arun_checks, blocking, record
from ._shapes import refusal_like

__all__ = ["GuardRun", "OutputRail", "RailSettings", "accumulate", "has_output", "message_parts", "read_chunk"]

_CALLS = frozenset({"tool_call", "tool_call_chunk", "invalid_tool_call", "server_tool_call", "server_tool_call_chunk"})


def read_chunk(chunk: Any) -> tuple[str | None, tuple[MediaPart, ...]]:
    """What a stream chunk adds: its text (None: unreadable, held for the final check) and media."""
    if isinstance(chunk, str):
        return chunk, ()
    if not isinstance(chunk, BaseMessage):
        return None, ()
    if (isinstance(chunk.content, str) and not chunk.additional_kwargs and not getattr(chunk, "tool_call_chunks", None)
            and not getattr(chunk, "tool_calls", None)):
        return chunk.content, ()  # the common token: skip the block translation (per-chunk cost)
    if chunk.additional_kwargs.get("audio"):
        return None, ()  # spoken output (OpenAI audio) streams in pieces: judged whole by the final check
    pieces: list[str] = []
    media: list[MediaPart] = []
    try:
        for block in chunk.content_blocks:
            kind = block.get("type")
            if kind == "text":
                pieces.append(str(block.get("text") or ""))
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
        pieces.extend(p.text for c in _calls(chunk) for p in c if isinstance(p, Text))
        media.extend(p for c in _calls(chunk) for p in c if not isinstance(p, Text))
    return "".join(pieces), tuple(media)


def _calls(message: AIMessage) -> list[tuple[Part, ...]]:
    """Each tool call as the judge reads it through every door (:func:`~omniguard_plugins.doors.render_tool_call`);
    a call without arguments is still an action, so it is judged by its name."""
    return [render_tool_call(c["name"], c["args"]) for c in message.tool_calls]


#: OpenAI streams a spoken answer as raw 16-bit mono PCM at this rate (a whole answer is a WAV file)
OPENAI_PCM_RATE = 24_000


def _spoken(message: BaseMessage) -> tuple[Part, ...]:
    """OpenAI's spoken answer (``additional_kwargs["audio"]``: base64 ``data`` and its
    ``transcript``), which LangChain keeps outside the content blocks. Streamed, ``data`` is the
    answer's raw PCM pieces added up, judged as that PCM in a WAV file."""
    audio = message.additional_kwargs.get("audio")
    if not isinstance(audio, dict):
        return ()
    parts: tuple[Part, ...] = ()
    data = audio.get("data")
    if isinstance(data, str) and data:
        if sniff_base64_kind(data) == "audio":
            parts = (Audio(data, origin="base64"),)
        else:
            try:
                parts = (Audio(wav_bytes(base64.b64decode(data), OPENAI_PCM_RATE), origin="wire"),)
            except (binascii.Error, ValueError):
                raise ContentError("the answer's audio data is neither base64 audio nor base64 PCM") from None
    return parts + ((Text(str(audio["transcript"])),) if audio.get("transcript") else ())


def message_parts(message: BaseMessage) -> tuple[Part, ...]:
    """A whole message as the judge reads it: its content blocks (text, images, audio, video),
    its spoken audio, then its reasoning as text and each tool call as every door renders it."""
    parts = parts_from_blocks(message.content_blocks) + _spoken(message)
    reasoning = "\n\n".join(str(b.get("reasoning") or "") for b in _reasoning(message))
    if reasoning.strip():
        parts += (Text(reasoning),)
    if isinstance(message, AIMessage):
        parts += tuple(p for call in _calls(message) for p in call)
    return parts


def has_output(message: BaseMessage) -> bool:
    """Whether a reply says anything to judge: content, audio, reasoning, or tool-call arguments."""
    return (has_content(message) or bool(_spoken(message)) or bool(_reasoning(message))
            or (isinstance(message, AIMessage) and bool(_calls(message))))


def _reasoning(message: BaseMessage) -> list[Any]:
    return [b for b in message.content_blocks if b.get("type") == "reasoning"]


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
    final check. ``read`` reads another kind of source item (the agent middleware's held
    callbacks). Verdict events go out in the caller's thread (sync: :meth:`recorded`) or task
    (async: inside :meth:`judge_window`).
    """

    judge: OmniGuard
    stream: StreamSettings
    user: tuple[Turn, ...] = ()
    asking: AskSettings = AskSettings()
    config: RunnableConfig | None = None
    is_async: bool = False
    streaming: bool = True
    #: reads a source item (default: :func:`read_chunk`); the item itself is kept for the final check
    read: Read[Any] | None = None
    rail: StreamRail[Any] = field(init=False)
    chunks: list[Any] = field(init=False, default_factory=list)
    #: what the final check judges instead of the chunks added up (the model's whole message)
    whole: Any = None
    _checks: dict[int, Check] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rail = StreamRail(self.stream, read=self._read)

    def _read(self, item: Any) -> tuple[str | None, Sequence[MediaPart]]:
        self.chunks.append(item)
        if not self.streaming:
            return None, ()
        return self.read(item) if self.read is not None else read_chunk(item)

    def check(self, content: Any, build: Callable[[], Conversation]) -> Check:
        return self.asking.check("output", content, build)

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
            check = self.whole_check(self.whole if self.whole is not None else _whole(self.chunks))
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
    mode: Literal["verdict", "critique", "score"] | None
    #: the wrapped runnable's output type, for a refusal before any chunk was seen
    output_type: Any = None

    @property
    def asking(self) -> AskSettings:
        return AskSettings(self.policy, self.mode, blocking(self.exit_behavior, self.violation_message))


class GuardRun:
    """One run of ``guard(runnable)``: the input check, then the output on an :class:`OutputRail`."""

    def __init__(self, settings: RailSettings, value: Any, streaming: bool, config: RunnableConfig | None = None,
                 is_async: bool = False) -> None:
        self.s = settings
        self.value = value
        self.out = OutputRail(settings.judge, settings.stream, asking=settings.asking, config=config, is_async=is_async,
                              streaming=streaming)
        self.config = config
        #: text was handed out (a refusal after it starts a new paragraph)
        self.showed_text = False

    def shown(self, chunk: Any) -> Any:
        """Note a chunk handed out; returns it."""
        self.showed_text = self.showed_text or bool(read_chunk(chunk)[0])
        return chunk

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
        return self.s.asking.check("input", self.value, self._input_conversation)

    def input_refusal(self, check: Check, verdict: Verdict) -> list[Any] | None:
        """None when the input passed; else the refusal to hand out (or raise)."""
        return None if verdict.safe else self._refuse(check, verdict)

    def ending(self) -> list[Any]:
        """After the rail: nothing, or the refusal of a blocked output (or raise)."""
        blocked = self.out.blocked()
        return [] if blocked is None else self._refuse(*blocked)

    def _refuse(self, check: Check, verdict: Verdict) -> list[Any]:
        decision = self.s.asking.block.decide(verdict, check.stage, check.content)  # raises for "error"
        sample = self.out.chunks[0] if self.out.chunks else self.s.output_type
        return [refusal_like(sample, ("\n\n" if self.showed_text else "") + (decision.text or ""))]
