"""A real LlamaIndex LLM for the streaming tests: it answers with scripted chunks (any
chunking), and can stream in lockstep with the judge (:class:`tests.support.stream_helpers.Lockstep`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import CustomLLM

from tests.support.stream_helpers import Lockstep, cut

__all__ = ["Lockstep", "ScriptedLLM", "cut"]


class ScriptedLLM(CustomLLM):
    """Answers every prompt with ``chunks`` (``produced`` counts what it streamed)."""

    chunks: list[str] = []
    pace: Any = None
    produced: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="".join(self.chunks))

    def _responses(self, emitted: int, chunk: str, text: str) -> CompletionResponse:
        self.produced += 1
        return CompletionResponse(text=text + chunk, delta=chunk)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in self.chunks:
                if self.pace is not None:
                    self.pace.wait(len(text))
                yield self._responses(len(text), chunk, text)
                text += chunk

        return gen()

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            for chunk in self.chunks:
                if self.pace is not None:
                    await self.pace.await_(len(text))
                yield self._responses(len(text), chunk, text)
                text += chunk

        return gen()


def scripted(chunks: Sequence[str], pace: Lockstep | None = None) -> ScriptedLLM:
    return ScriptedLLM(chunks=list(chunks), pace=pace)
