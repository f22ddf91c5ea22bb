"""A real FunctionAgent's inner LLM for the OmniGuardLLM tests: LlamaIndex's own
MockFunctionCallingLLM, driven by a script that records every message list it was shown."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from llama_index.core.agent.workflow import AgentStream, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, TextBlock, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from PIL import Image

__all__ = ["Script", "call", "png_base64", "run_agent", "say", "stream_of"]


def say(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


def call(tool: str, text: str = "", **kwargs: Any) -> ChatMessage:
    """An answer that calls ``tool(**kwargs)``, after ``text``."""
    blocks: list[Any] = [TextBlock(text=text)] if text else []
    return ChatMessage(role="assistant", blocks=[*blocks, ToolCallBlock(tool_call_id=f"call-{tool}", tool_name=tool,
                                                                       tool_kwargs=kwargs)])


def stream_of(*pieces: str | ChatMessage) -> tuple[str | ChatMessage, ...]:
    """An answer in ``pieces`` (text, or a message such as a tool call): streamed piece by piece
    (MockFunctionCallingLLM streams each message's content as a delta), or whole when the LLM is
    not streaming."""
    return pieces


class Script:
    """Answers with ``turns[i]`` on the i-th call (the last one repeats); ``seen`` holds the
    messages of every call, so a test can show what the inner LLM was never given.
    ``stream``: how the mock is called for streamed answers (its chat() wants a message, its
    stream_chat() a generator, its astream_chat() an async generator)."""

    def __init__(self, *turns: ChatMessage | tuple[str | ChatMessage, ...],
                 stream: Literal["sync", "async"] | None = None) -> None:
        self.turns = list(turns)
        self.stream = stream
        self.seen: list[list[ChatMessage]] = []

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        turn = self.turns[min(len(self.seen), len(self.turns)) - 1]
        items = [turn] if isinstance(turn, ChatMessage) else turn
        pieces = [p if isinstance(p, ChatMessage) else say(p) for p in items]
        if self.stream == "async":
            return _agen(pieces)
        if self.stream == "sync":
            return iter(pieces)
        return pieces[0] if len(pieces) == 1 else say("".join(p.content or "" for p in pieces))

    def llm(self) -> MockFunctionCallingLLM:
        return MockFunctionCallingLLM(response_generator=self)

    def texts(self) -> str:
        """Everything the inner LLM was shown, as text."""
        return "\n".join(m.content or "" for messages in self.seen for m in messages)


def png_base64(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue())


async def run_agent(agent: FunctionAgent, question: str) -> tuple[str, list[AgentStream], Any]:
    """Run the agent as a user does: its events streamed, then its answer."""
    handler = agent.run(question)
    events = [ev async for ev in handler.stream_events() if isinstance(ev, AgentStream)]
    result = await handler
    return str(result), events, result


async def _agen(messages: list[ChatMessage]) -> AsyncIterator[ChatMessage]:
    for message in messages:
        yield message
