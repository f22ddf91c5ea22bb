"""Guarded token streams for LlamaIndex's streaming responses.

The windowing itself is the core's :class:`~omniguard_plugins.streaming.StreamModerator`; this
module only pipes LlamaIndex token generators through it and ends a blocked stream with the
refusal (or raises). ``wrap`` and ``awrap`` differ only in how they iterate and wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from llama_index.core.chat_engine.types import StreamingAgentChatResponse

from omniguard_plugins import Verdict
from omniguard_plugins.streaming import StreamModerator

from ._rails import violation

__all__ = ["GuardedStreamingChatResponse", "StreamGuard"]


class StreamGuard:
    """Pipes tokens through a StreamModerator. On a block: stop reading the source, close it,
    call ``on_block(verdict)``, then yield the refusal (``on_block_mode="refuse"``) or raise
    GuardViolation (``"raise"``)."""

    def __init__(
        self,
        moderator: StreamModerator,
        *,
        mode: str,
        refusal: str,
        content: Any = None,
        on_block: Callable[[Verdict], Any] | None = None,
        aon_block: Callable[[Verdict], Awaitable[Any]] | None = None,
    ) -> None:
        self.moderator = moderator
        self.mode = mode
        self.refusal = refusal
        self.content = content
        self._on_block = on_block
        self._aon_block = aon_block

    def wrap(self, tokens: Iterable[str]) -> Iterator[str]:
        mod = self.moderator
        try:
            for chunk in tokens:
                blocked = mod.feed(chunk or "")
                if out := mod.take():
                    yield out
                if blocked is not None:
                    break
            else:
                mod.finish()
                if out := mod.take():
                    yield out
        finally:
            _close(tokens)
        if mod.verdict is not None:
            if self._on_block is not None:
                self._on_block(mod.verdict)
            yield self._ending(mod.verdict)

    async def awrap(self, tokens: Any) -> AsyncIterator[str]:
        mod = self.moderator
        try:
            async for chunk in tokens:
                blocked = await mod.afeed(chunk or "")
                if out := mod.take():
                    yield out
                if blocked is not None:
                    break
            else:
                await mod.afinish()
                if out := mod.take():
                    yield out
        finally:
            if hasattr(tokens, "aclose"):
                await tokens.aclose()
        if mod.verdict is not None:
            if self._aon_block is not None:
                await self._aon_block(mod.verdict)
            elif self._on_block is not None:
                self._on_block(mod.verdict)
            yield self._ending(mod.verdict)

    def _ending(self, verdict: Verdict) -> str:
        if self.mode == "raise":
            raise violation("output", verdict, self.content if self.content is not None else self.moderator.text,
                            "streamed answer")
        return ("\n\n" if self.moderator.released.strip() else "") + self.refusal


def _close(tokens: Any) -> None:
    close = getattr(tokens, "close", None)
    if callable(close):
        close()


class GuardedStreamingChatResponse(StreamingAgentChatResponse):
    """A StreamingAgentChatResponse whose tokens come through a StreamGuard (or, for a
    blocked input, a fixed refusal). Reading it works as on the original: ``response_gen``,
    ``async_response_gen()``, ``print_response_stream()``, ``str()`` once consumed."""

    def __init__(
        self,
        inner: StreamingAgentChatResponse | None,
        guard: StreamGuard | None = None,
        *,
        fixed: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            sources=list(inner.sources) if inner is not None else [],
            source_nodes=list(inner.source_nodes) if inner is not None else [],
            is_writing_to_memory=False,
        )
        self._inner = inner
        self._guard = guard
        self._fixed = fixed
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def response_gen(self) -> Iterator[str]:  # type: ignore[override]
        if self._fixed is not None or self._inner is None or self._guard is None:
            source: Iterable[str] = [self._fixed or ""]
        else:
            source = self._guard.wrap(self._inner.response_gen)
        yield from self._record(source)

    async def async_response_gen(self) -> AsyncIterator[str]:  # type: ignore[override]
        if self._fixed is not None or self._inner is None or self._guard is None:
            for token in self._record([self._fixed or ""]):
                yield token
            return
        async for token in self._guard.awrap(self._inner.async_response_gen()):
            self.unformatted_response += token
            yield token
        self._done()

    def _record(self, tokens: Iterable[str]) -> Iterator[str]:
        for token in tokens:
            self.unformatted_response += token
            yield token
        self._done()

    def _done(self) -> None:
        self.response = self.unformatted_response.strip()
        self.is_done = True
