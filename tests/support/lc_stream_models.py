"""Real LangChain chat models for the streaming tests: they stream exactly the chunks a test
scripts (random chunkings, tool-call deltas, media blocks), and can wait for the judge
(:class:`tests.support.stream_helpers.Lockstep`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from tests.support.stream_helpers import Lockstep, cut

__all__ = ["Lockstep", "ScriptedChatModel", "StreamChecks", "cut"]

Piece = str | AIMessageChunk


def _chunk(piece: Piece) -> AIMessageChunk:
    return piece if isinstance(piece, AIMessageChunk) else AIMessageChunk(content=piece)


def _length(piece: Piece) -> int:
    chunk = _chunk(piece)
    text = chunk.content if isinstance(chunk.content, str) else ""
    return len(text) + sum(len(c.get("args") or "") + (len(c["name"]) + 1 if c.get("name") else 0)
                     for c in chunk.tool_call_chunks)


class ScriptedChatModel(BaseChatModel):
    """Answers each call with the next reply of ``replies`` (a list of chunks), streamed chunk by
    chunk; ``pace`` (a Lockstep) may hold it back between chunks. ``produced`` counts chunks."""

    replies: list[list[Any]] = Field(repr=False)
    pace: Any = None
    produced: int = 0
    seen: list[list[BaseMessage]] = Field(default_factory=list, repr=False)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _next(self, messages: list[BaseMessage]) -> list[Piece]:
        self.seen.append(list(messages))
        return self.replies.pop(0)

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        chunks = [_chunk(p) for p in self._next(messages)]
        whole = chunks[0] + chunks[1:] if len(chunks) > 1 else chunks[0]
        message = AIMessage(content=whole.content, tool_calls=whole.tool_calls)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: Any = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        emitted = 0
        for piece in self._next(messages):
            if self.pace is not None:
                self.pace.wait(emitted)
            self.produced += 1
            emitted += _length(piece)
            yield ChatGenerationChunk(message=_chunk(piece))

    async def _astream(self, messages: list[BaseMessage], stop: Any = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        emitted = 0
        for piece in self._next(messages):
            if self.pace is not None:
                await self.pace.await_(emitted)
            else:
                await asyncio.sleep(0)
            self.produced += 1
            emitted += _length(piece)
            yield ChatGenerationChunk(message=_chunk(piece))


class StreamChecks(BaseCallbackHandler):
    """Which stream checks the output rail ran (``"step"``, ``"media"``, ``"final"``), from the
    ``omniguard_verdict`` events a user's callbacks see."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == "omniguard_verdict" and data["stage"] == "output":
            self.kinds.append(data["details"].get("stream_check", "whole"))
