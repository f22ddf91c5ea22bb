"""A streamed LLM answer (``ChatResponse`` or ``CompletionResponse`` chunks) through the core rail.

The rail (:mod:`omniguard_plugins.streaming`) holds back what no verdict covers yet. This module
only says how to read these chunks and what a shown chunk looks like:

- A chunk's text is its ``delta`` (and a chat chunk's ``thinking_delta``: reasoning is shown too).
- What is shown of a chunk is its text alone: a fresh message holding the text released so far.
  Tool calls, media blocks and the provider's ``raw`` payload (which can carry tool-call
  fragments) are never shown while the answer streams.
- When the source ends, the answer's other content (its tool calls, rendered by the core's
  ``render_tool_call``, and its image, audio and video blocks) joins the rail as one last item,
  so the final check judges the whole answer. Only after that check passed does the last chunk
  go out: the inner LLM's own last response, tool calls and all (an agent acts on that one).
- On a block nothing more is shown; the door's :class:`~omniguard_plugins.doors.Blocking`
  decides: raise, or one last chunk whose delta is the refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
    TextBlock,
    ThinkingBlock,
)

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, MediaPart, Part, Text, Turn
from omniguard_plugins.doors import Ask, Blocking, Decision
from omniguard_plugins.errors import ContentError
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate, moderate

from ._blocking import verdict_metadata
from ._convert import answer_parts, failing

__all__ = ["AnswerStream", "refused_response"]

Response = Union[ChatResponse, CompletionResponse]
#: the LLM's reading of a chat response's tool calls (None: read its tool-call blocks)
ToolCalls = Callable[[ChatResponse], "Sequence[Any] | None"]


@dataclass(frozen=True)
class _Chunk:
    response: Response
    text: str  # the answer text this chunk adds
    thinking: str  # reasoning it adds


@dataclass(frozen=True)
class _Rest:
    """The answer's content besides its streamed text, read when the source ended."""

    parts: tuple[Part, ...]
    error: ContentError | None = None


def refused_response(kind: type[Response], decision: Decision, lead: str = "") -> Response:
    """The refusal in the shape the caller asked for; the verdict in ``additional_kwargs`` and
    ``raw`` under ``"omniguard"`` (never in the message: some LLMs send a message's kwargs on)."""
    text = decision.text or ""
    meta = {"omniguard": verdict_metadata(decision.verdict, decision.stage, blocked=True)}
    if kind is CompletionResponse:
        return CompletionResponse(text=text, delta=lead + text, raw=meta, additional_kwargs=meta)
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=lead + text,
                        raw=meta, additional_kwargs=meta)


class AnswerStream:
    """Runs one streamed answer through a fresh rail (see the module docstring)."""

    def __init__(
        self,
        judge: OmniGuard,
        settings: StreamSettings,
        blocking: Blocking,
        *,
        kind: type[Response],
        user: tuple[Part, ...],
        tool_calls: ToolCalls | None,
        policy: Any = None,
        mode: Any = None,
    ) -> None:
        self._judge = judge
        self._kind = kind
        self._context = (Turn("user", user),) if user else ()
        self._blocking = blocking
        self._tool_calls = tool_calls
        self._policy = policy
        self._mode = mode
        self.rail: StreamRail[Any] = StreamRail(settings, read=self._read)
        self._last: Response | None = None
        self._seen = ""  # the answer text (no reasoning) read from the source so far
        self._shown = ""
        self._error: ContentError | None = None

    # ------------------------------------------------------------------ the two drivers

    def wrap(self, source: Iterable[Response]) -> Iterator[Response]:
        for item in moderate(self._tagged(source), self.rail, self._judge_window):
            if isinstance(item, _Chunk):
                yield self._show(item)
        yield from self._ending()

    async def awrap(self, source: AsyncIterable[Response]) -> AsyncIterator[Response]:
        async for item in amoderate(self._atagged(source), self.rail, self._judge_window):
            if isinstance(item, _Chunk):
                yield self._show(item)
        for out in self._ending():
            yield out

    def _tagged(self, source: Iterable[Response]) -> Iterator[_Chunk | _Rest]:
        chunks = iter(source)
        try:
            for response in chunks:
                yield self._chunk(response)
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
        yield self._rest()

    async def _atagged(self, source: AsyncIterable[Response]) -> AsyncIterator[_Chunk | _Rest]:
        chunks = source.__aiter__()
        try:
            async for response in chunks:
                yield self._chunk(response)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if callable(aclose):
                await aclose()
        yield self._rest()

    # ------------------------------------------------------------------ reading

    def _read(self, item: _Chunk | _Rest) -> tuple[str | None, Sequence[MediaPart]]:
        """The rail's view of an item. The answer's other content follows its text as the judge
        reads a whole answer (text parts a blank line apart), so a call gets the same verdict
        streamed or not."""
        if isinstance(item, _Chunk):
            return item.thinking + item.text, ()
        if item.error is not None:
            return None, ()  # opaque: held for the final check, which the judge fails under on_error
        text = "\n\n".join(p.text for p in item.parts if isinstance(p, Text) and p.text.strip())
        media = tuple(p for p in item.parts if not isinstance(p, Text))
        lead = "\n\n" if text and self.rail.text.strip() else ""
        return lead + text, media  # type: ignore[return-value]

    def _chunk(self, response: Response) -> _Chunk:
        self._last = response
        full = response.text if isinstance(response, CompletionResponse) else (response.message.content or "")
        delta = response.delta if response.delta is not None else full[len(self._seen):]
        self._seen += delta
        thinking = response.additional_kwargs.get("thinking_delta") if isinstance(response, ChatResponse) else None
        return _Chunk(response, delta, thinking if isinstance(thinking, str) else "")

    def _rest(self) -> _Rest:
        """What the last response holds besides the streamed text: tool calls and media (and its
        text, when a provider's final message differs from the deltas it sent)."""
        last = self._last
        if not isinstance(last, ChatResponse):
            text = last.text if isinstance(last, CompletionResponse) else ""
            return _Rest((Text(text),) if text.strip() and text.strip() != self._seen.strip() else ())
        message = last.message
        same_text = (message.content or "").strip() == self._seen.strip()
        kept = [b for b in message.blocks if not isinstance(b, ThinkingBlock)
                and not (same_text and isinstance(b, TextBlock))]
        try:
            calls = self._tool_calls(last) if self._tool_calls is not None else None
            return _Rest(answer_parts(message.model_copy(update={"blocks": kept}), calls))
        except ContentError as exc:
            self._error = exc
            return _Rest((), exc)

    async def _judge_window(self, window: Window) -> Verdict:
        conversation: Conversation | Callable[[], Conversation] = window.conversation(self._context)
        if window.kind == "final" and self._error is not None:
            conversation = failing(self._error)
        ask = Ask(conversation=conversation, stage="output", policy=self._policy, mode=self._mode,
                  explain=self._blocking.explain)
        return await self._judge.acheck(ask)

    # ------------------------------------------------------------------ what is shown

    def _show(self, item: _Chunk) -> Response:
        self._shown += item.text
        response = item.response
        kwargs = {k: v for k, v in response.additional_kwargs.items() if k != "tool_calls"}
        if isinstance(response, CompletionResponse):
            return CompletionResponse(text=self._shown, delta=item.text, additional_kwargs=kwargs)
        message = ChatMessage(role=MessageRole.ASSISTANT, content=self._shown)
        return ChatResponse(message=message, delta=item.text, additional_kwargs=kwargs)

    def _ending(self) -> Iterator[Response]:
        blocked = self.rail.blocked
        if blocked is not None:
            decision = self._blocking.decide(blocked, "output", self.rail.text)  # raises under "raise"
            window = blocked.details.get("stream_window")
            out = refused_response(self._kind, decision, "\n\n" if self._shown.strip() else "")
            if window:
                out.additional_kwargs["omniguard"]["window"] = list(window)
            yield out
        elif self._last is not None:
            yield self._last.model_copy(update={"delta": ""})


