"""GuardedQueryEngine / GuardedChatEngine: an input rail before the wrapped engine runs (so an
unsafe query never reaches retrieval), an output rail on its answer, streamed answers moderated
in rolling windows.

    safe = GuardedQueryEngine(index.as_query_engine())
    safe_chat = GuardedChatEngine(index.as_chat_engine())

A block answers with ``refusal_message`` (``on_block="refuse"``, the default) or raises
:class:`~omniguard_plugins.errors.GuardViolation` (``on_block="raise"``). The verdict of a
refused answer is in ``response.metadata["omniguard"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.chat_engine.types import (
    AGENT_CHAT_RESPONSE_TYPE,
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.memory import BaseMemory
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import QueryBundle

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Part
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.streaming import StreamModerator

from ._convert import message_parts, query_parts
from ._rails import DEFAULT_REFUSAL, OnBlock, guarded, resolve_judge, verdict_info, violation
from ._stream import GuardedStreamingChatResponse, StreamGuard

__all__ = ["GuardedChatEngine", "GuardedQueryEngine"]

#: a check to run (check() kwargs), a verdict already known (a failed conversion), or nothing
_Plan = Union[dict[str, Any], Verdict, None]


class _Rails:
    """Settings and decisions both guarded engines share; the engines only sequence them."""

    def __init__(
        self,
        judge: OmniGuard | None,
        *,
        check_input: bool,
        check_output: bool,
        on_block: OnBlock,
        refusal_message: str,
        stream_window_chars: int,
        stream_every_chars: int,
        stream_hold_back: bool,
    ) -> None:
        if on_block not in ("refuse", "raise"):
            raise ConfigError(f"on_block must be 'refuse' or 'raise', got {on_block!r}")
        self._judge = judge
        self.check_input = check_input
        self.check_output = check_output
        self.on_block = on_block
        self.refusal_message = refusal_message
        # fail on bad window settings now, not on the first streamed answer
        StreamModerator(judge, window_chars=stream_window_chars, every_chars=stream_every_chars)
        self.stream_window_chars = stream_window_chars
        self.stream_every_chars = stream_every_chars
        self.stream_hold_back = stream_hold_back

    @property
    def judge(self) -> OmniGuard:
        return resolve_judge(self._judge)

    def _user(self, convert: Callable[[], tuple[Part, ...]]) -> tuple[tuple[Part, ...], _Plan]:
        """The user turn as parts, and the input check to run on it."""
        parts, failed = guarded(self.judge, convert)
        if not self.check_input:
            return parts or (), None
        if failed is not None:
            return (), failed
        return parts, ({"user": parts, "direction": "input"} if parts else None)

    def _output(self, user: tuple[Part, ...], answer: str | None) -> _Plan:
        if not self.check_output or not answer or not answer.strip():
            return None
        return {"user": user or None, "assistant": answer, "direction": "output"}

    def _run(self, plan: _Plan) -> Verdict | None:
        return plan if not isinstance(plan, dict) else self.judge.check(**plan)

    async def _arun(self, plan: _Plan) -> Verdict | None:
        return plan if not isinstance(plan, dict) else await self.judge.acheck(**plan)

    def _blocks(self, stage: str, verdict: Verdict | None, content: Any, what: str) -> bool:
        """True when the verdict blocks (and on_block is "refuse"); raises under "raise"."""
        if verdict is None or verdict.safe:
            return False
        if self.on_block == "raise":
            raise violation(stage, verdict, content, what)
        return True

    def _info(self, stage: str, verdict: Verdict) -> dict[str, Any]:
        return {"omniguard": verdict_info(verdict, stage=stage, blocked=True)}

    def _stream_guard(self, user: tuple[Part, ...], content: Any, **hooks: Any) -> StreamGuard:
        moderator = StreamModerator(
            self.judge,
            window_chars=self.stream_window_chars,
            every_chars=self.stream_every_chars,
            context=user or None,
            hold_back=self.stream_hold_back,
        )
        return StreamGuard(moderator, mode=self.on_block, refusal=self.refusal_message, content=content, **hooks)


def _settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    defaults = {
        "check_input": True,
        "check_output": True,
        "on_block": "refuse",
        "refusal_message": DEFAULT_REFUSAL,
        "stream_window_chars": 1000,
        "stream_every_chars": 200,
        "stream_hold_back": True,
    }
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}; known: {', '.join(defaults)}")
    return {**defaults, **kwargs}


class GuardedQueryEngine(_Rails, BaseQueryEngine):
    """Wraps any query engine. Settings (keyword-only): ``check_input``, ``check_output``,
    ``on_block`` ("refuse" | "raise"), ``refusal_message``, ``stream_window_chars``,
    ``stream_every_chars``, ``stream_hold_back`` (show streamed text only once judged)."""

    def __init__(self, query_engine: BaseQueryEngine, judge: OmniGuard | None = None, **settings: Any) -> None:
        _Rails.__init__(self, judge, **_settings(settings))
        BaseQueryEngine.__init__(self, callback_manager=None)
        self.query_engine = query_engine

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self.query_engine}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        user, plan = self._user(lambda: query_parts(query_bundle))
        verdict = self._run(plan)
        if self._blocks("input", verdict, query_bundle, "query"):
            return self._refused("input", verdict)
        response = self.query_engine.query(query_bundle)
        if isinstance(response, StreamingResponse):
            return self._streaming(user, response)
        return self._answered(user, response, self._run(self._output(user, _text(response))))

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        user, plan = self._user(lambda: query_parts(query_bundle))
        verdict = await self._arun(plan)
        if self._blocks("input", verdict, query_bundle, "query"):
            return self._refused("input", verdict)
        response = await self.query_engine.aquery(query_bundle)
        if isinstance(response, (StreamingResponse, AsyncStreamingResponse)):
            return self._streaming(user, response)
        return self._answered(user, response, await self._arun(self._output(user, _text(response))))

    def _answered(self, user: tuple[Part, ...], response: RESPONSE_TYPE, verdict: Verdict | None) -> RESPONSE_TYPE:
        if self._blocks("output", verdict, response, "answer"):
            return self._refused("output", verdict)  # type: ignore[arg-type]
        return response

    def _refused(self, stage: str, verdict: Verdict) -> Response:
        return Response(response=self.refusal_message, source_nodes=[], metadata=self._info(stage, verdict))

    def _streaming(self, user: tuple[Part, ...], response: StreamingResponse | AsyncStreamingResponse) -> RESPONSE_TYPE:
        if not self.check_output:
            return response
        metadata = dict(response.metadata or {})

        def blocked(verdict: Verdict) -> None:
            metadata.update(self._info("output", verdict))

        guard = self._stream_guard(user, response, on_block=blocked)
        if isinstance(response, AsyncStreamingResponse):
            return AsyncStreamingResponse(response_gen=guard.awrap(response.response_gen),
                                          source_nodes=response.source_nodes, metadata=metadata)
        return StreamingResponse(response_gen=guard.wrap(response.response_gen),
                                 source_nodes=response.source_nodes, metadata=metadata)


def _text(response: RESPONSE_TYPE) -> str | None:
    if isinstance(response, PydanticResponse):
        return response.response.model_dump_json() if response.response is not None else None
    return getattr(response, "response", None) if isinstance(response, Response) else str(response)


class GuardedChatEngine(_Rails, BaseChatEngine):
    """Wraps any chat engine; same settings as :class:`GuardedQueryEngine`. ``message`` may be
    a str or a ChatMessage with image/audio/video blocks: it is judged with its media and
    handed to the wrapped engine unchanged. A refused answer is also replaced in the wrapped
    engine's memory, so the next turn does not build on it."""

    def __init__(self, chat_engine: BaseChatEngine, judge: OmniGuard | None = None, **settings: Any) -> None:
        _Rails.__init__(self, judge, **_settings(settings))
        self.chat_engine = chat_engine

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self.chat_engine.chat_history

    def reset(self) -> None:
        self.chat_engine.reset()

    def chat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
             **kwargs: Any) -> AGENT_CHAT_RESPONSE_TYPE:
        user, plan = self._user(lambda: message_parts(message))
        verdict = self._run(plan)
        if self._blocks("input", verdict, message, "message"):
            return self._refused("input", verdict)  # type: ignore[arg-type]
        response = self.chat_engine.chat(message, chat_history=chat_history, **kwargs)  # type: ignore[arg-type]
        verdict = self._run(self._output(user, response.response))
        if self._blocks("output", verdict, response, "answer"):
            _replace_in_memory(self._memory(), response.response, self.refusal_message)
            return self._refused("output", verdict)  # type: ignore[arg-type]
        return response

    async def achat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
                    **kwargs: Any) -> AGENT_CHAT_RESPONSE_TYPE:
        user, plan = self._user(lambda: message_parts(message))
        verdict = await self._arun(plan)
        if self._blocks("input", verdict, message, "message"):
            return self._refused("input", verdict)  # type: ignore[arg-type]
        response = await self.chat_engine.achat(message, chat_history=chat_history, **kwargs)  # type: ignore[arg-type]
        verdict = await self._arun(self._output(user, response.response))
        if self._blocks("output", verdict, response, "answer"):
            await _areplace_in_memory(self._memory(), response.response, self.refusal_message)
            return self._refused("output", verdict)  # type: ignore[arg-type]
        return response

    def stream_chat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
                    **kwargs: Any) -> StreamingAgentChatResponse:
        user, plan = self._user(lambda: message_parts(message))
        verdict = self._run(plan)
        if self._blocks("input", verdict, message, "message"):
            return self._refused_stream("input", verdict)  # type: ignore[arg-type]
        inner = self.chat_engine.stream_chat(message, chat_history=chat_history, **kwargs)  # type: ignore[arg-type]
        return self._streaming(user, inner)

    async def astream_chat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
                           **kwargs: Any) -> StreamingAgentChatResponse:
        user, plan = self._user(lambda: message_parts(message))
        verdict = await self._arun(plan)
        if self._blocks("input", verdict, message, "message"):
            return self._refused_stream("input", verdict)  # type: ignore[arg-type]
        inner = await self.chat_engine.astream_chat(message, chat_history=chat_history, **kwargs)  # type: ignore[arg-type]
        return self._streaming(user, inner)

    # ------------------------------------------------------------------ helpers

    def _refused(self, stage: str, verdict: Verdict) -> AgentChatResponse:
        return AgentChatResponse(response=self.refusal_message, metadata=self._info(stage, verdict))

    def _refused_stream(self, stage: str, verdict: Verdict) -> GuardedStreamingChatResponse:
        return GuardedStreamingChatResponse(None, fixed=self.refusal_message, metadata=self._info(stage, verdict))

    def _streaming(self, user: tuple[Part, ...], inner: StreamingAgentChatResponse) -> StreamingAgentChatResponse:
        if not self.check_output:
            return inner
        out = GuardedStreamingChatResponse(inner)

        def blocked(verdict: Verdict) -> None:
            out.metadata.update(self._info("output", verdict))
            _replace_in_memory(self._memory(), guard.moderator.text, self.refusal_message)

        async def ablocked(verdict: Verdict) -> None:
            out.metadata.update(self._info("output", verdict))
            await _areplace_in_memory(self._memory(), guard.moderator.text, self.refusal_message)

        guard = self._stream_guard(user, inner, on_block=blocked, aon_block=ablocked)
        out._guard = guard
        return out

    def _memory(self) -> BaseMemory | None:
        # LlamaIndex's chat engines keep their memory here; others simply are not scrubbed
        memory = getattr(self.chat_engine, "_memory", None)
        return memory if isinstance(memory, BaseMemory) else None


def _replaced(messages: list[ChatMessage], answer: str, refusal: str) -> bool:
    """Swap the last assistant message for the refusal if it is (or starts with) the blocked
    answer. Streams are cut early, so the stored answer may be longer than what we read."""
    head = answer.strip()
    for msg in reversed(messages):
        if msg.role == MessageRole.ASSISTANT:
            if head and (msg.content or "").strip().startswith(head):
                msg.blocks = [TextBlock(text=refusal)]
                return True
            return False
    return False


def _replace_in_memory(memory: BaseMemory | None, answer: str | None, refusal: str) -> None:
    if memory is not None and answer:
        messages = memory.get_all()
        if _replaced(messages, answer, refusal):
            memory.set(messages)


async def _areplace_in_memory(memory: BaseMemory | None, answer: str | None, refusal: str) -> None:
    if memory is not None and answer:
        messages = await memory.aget_all()
        if _replaced(messages, answer, refusal):
            await memory.aset(messages)
