"""Guarded token streams for LlamaIndex's streaming responses.

The rail (hold back, pipelined windows, final check, block) is the core's
:mod:`omniguard_plugins.streaming`; this module only runs LlamaIndex token generators through
it and ends a blocked stream with the refusal (or raises). Tokens are ``str``; a ``None`` token
counts as empty.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from typing import Any, Literal

from llama_index.core.chat_engine.types import StreamingAgentChatResponse

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import MediaPart, Part, Turn
from omniguard_plugins.doors import Ask
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate, moderate

from ._blocking import blocking

__all__ = ["GuardedStreamingChatResponse", "OnBlock", "StreamGuard"]

#: how a guarded engine blocks: answer with the refusal message, or raise GuardViolation
OnBlock = Literal["refuse", "raise"]


def _token(chunk: Any) -> tuple[str, tuple[MediaPart, ...]]:
    return (chunk if isinstance(chunk, str) else ""), ()


class StreamGuard:
    """Runs tokens through a fresh core rail per stream. On a block: the source is closed,
    ``after_block(verdict)`` runs, then the refusal is yielded (``on_block="refuse"``) or
    GuardViolation raised (``"raise"``)."""

    def __init__(
        self,
        judge: OmniGuard,
        settings: StreamSettings,
        *,
        user: tuple[Part, ...] = (),
        on_block: OnBlock,
        refusal: str | None,
        content: Any = None,
        policy: Any = None,
        mode: Any = None,
        after_block: Callable[[Verdict], Any] | None = None,
        aafter_block: Callable[[Verdict], Awaitable[Any]] | None = None,
    ) -> None:
        self._omniguard = judge
        self._context = (Turn("user", user),) if user else ()
        self.settings = settings
        self.blocking = blocking(on_block, ("refuse", "raise"), "on_block", refusal)
        self.content = content
        self._policy = policy
        self._mode = mode
        self._after_block = after_block
        self._aafter_block = aafter_block
        self.rail: StreamRail[Any] = StreamRail(settings, read=_token)
        self.shown = ""

    async def _judge(self, window: Window) -> Verdict:
        return await self._omniguard.acheck(Ask(conversation=window.conversation(self._context), stage="output",
                                                policy=self._policy, mode=self._mode, explain=self.blocking.explain))

    def _new_rail(self) -> StreamRail[Any]:
        self.rail, self.shown = StreamRail(self.settings, read=_token), ""
        return self.rail

    def _show(self, token: Any) -> str:
        text = token if isinstance(token, str) else ""
        self.shown += text
        return text

    def wrap(self, tokens: Iterable[Any]) -> Generator[str, None, None]:
        rail = self._new_rail()
        for token in moderate(tokens, rail, self._judge):
            yield self._show(token)
        if rail.blocked is not None:
            if self._after_block is not None:
                self._after_block(rail.blocked)
            yield self._ending(rail.blocked)

    async def awrap(self, tokens: Any) -> AsyncGenerator[str, None]:
        rail = self._new_rail()
        async for token in amoderate(tokens, rail, self._judge):
            yield self._show(token)
        if rail.blocked is not None:
            if self._aafter_block is not None:
                await self._aafter_block(rail.blocked)
            elif self._after_block is not None:
                self._after_block(rail.blocked)
            yield self._ending(rail.blocked)

    def _ending(self, verdict: Verdict) -> str:
        """The one decision site for a blocked stream: raise, or the refusal after what was shown."""
        content = self.content if self.content is not None else self.rail.text
        decision = self.blocking.decide(verdict, "output", content)
        return ("\n\n" if self.shown.strip() else "") + (decision.text or "")


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
