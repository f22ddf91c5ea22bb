"""GuardedQueryEngine / GuardedChatEngine: an input rail before the wrapped engine runs (so an
unsafe query never reaches retrieval), an output rail on its answer, and streamed answers through
the core stream rail (nothing is shown before its verdict).

    safe = GuardedQueryEngine(index.as_query_engine())
    safe_chat = GuardedChatEngine(index.as_chat_engine())

A block answers with ``refusal_message`` (``on_block="refuse"``, the default) or raises
:class:`~omniguard_plugins.errors.GuardViolation` (``on_block="raise"``). The verdict of a
refused answer is in ``response.metadata["omniguard"]``.

Each operation is written once, as a generator of steps (``_Judge``: a check to run; ``_Call``:
a call into the wrapped engine or its memory, with its sync and async twin); :meth:`_Rails._drive`
and :meth:`_Rails._adrive` are the only places sync and async differ.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, Union

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
from omniguard_plugins.content import Conversation, Part
from omniguard_plugins.errors import ConfigError, ContentError
from omniguard_plugins.rails import DEFAULT_REFUSAL, refusal_text
from omniguard_plugins.streaming import StreamSettings

from ._convert import message_parts, query_parts
from ._rails import OnBlock, resolve_judge, verdict_info, violation
from ._stream import GuardedStreamingChatResponse, StreamGuard

if TYPE_CHECKING:  # typing.Unpack is 3.11+; annotations are never evaluated at run time
    from typing_extensions import Unpack

__all__ = ["GuardedChatEngine", "GuardedQueryEngine"]

#: a check to run (check() kwargs), a verdict already known (a failed conversion), or nothing
_Plan = Union[dict[str, Any], Verdict, None]


@dataclass(frozen=True)
class _Judge:
    plan: _Plan


@dataclass(frozen=True)
class _Call:
    sync: Callable[..., Any]
    asyn: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


_Steps = Generator[Union[_Judge, _Call], Any, Any]

_DEFAULT_STREAM = StreamSettings()


class Settings(TypedDict, total=False):
    """The keyword-only settings of both guarded engines (defaults in :class:`_Rails`)."""

    check_input: bool
    check_output: bool
    on_block: OnBlock
    refusal_message: str
    window_chars: int
    step_chars: int
    max_unjudged_chars: int
    max_in_flight: int


class _Rails:
    """Settings, decisions and the two drivers both guarded engines share."""

    def __init__(
        self,
        judge: OmniGuard | None,
        *,
        check_input: bool = True,
        check_output: bool = True,
        on_block: OnBlock = "refuse",
        refusal_message: str = DEFAULT_REFUSAL,
        window_chars: int = _DEFAULT_STREAM.window_chars,
        step_chars: int = _DEFAULT_STREAM.step_chars,
        max_unjudged_chars: int = _DEFAULT_STREAM.max_unjudged_chars,
        max_in_flight: int = _DEFAULT_STREAM.max_in_flight,
    ) -> None:
        if on_block not in ("refuse", "raise"):
            raise ConfigError(f"on_block must be 'refuse' or 'raise', got {on_block!r}")
        self._judge_arg = judge
        self._resolved: OmniGuard | None = None
        self.check_input = check_input
        self.check_output = check_output
        self.on_block = on_block
        self.refusal_message = refusal_message
        # fails on bad window settings now, not on the first streamed answer
        self.stream_settings = StreamSettings(window_chars, step_chars, max_unjudged_chars, max_in_flight)

    @property
    def judge(self) -> OmniGuard:
        """The judge handed in, else the shared one, resolved once (not per access)."""
        if self._resolved is None:
            self._resolved = resolve_judge(self._judge_arg)
        return self._resolved

    # ------------------------------------------------------------------ the drivers

    def _drive(self, steps: _Steps) -> Any:
        result: Any = None
        try:
            while True:
                step = steps.send(result)
                if isinstance(step, _Judge):
                    result = None if step.plan is None else self.judge.check(**step.plan)
                else:
                    result = step.sync(*step.args, **step.kwargs)
        except StopIteration as done:
            return done.value

    async def _adrive(self, steps: _Steps) -> Any:
        result: Any = None
        try:
            while True:
                step = steps.send(result)
                if isinstance(step, _Judge):
                    result = None if step.plan is None else await self.judge.acheck(**step.plan)
                else:
                    result = await step.asyn(*step.args, **step.kwargs)
        except StopIteration as done:
            return done.value

    # ------------------------------------------------------------------ decisions

    def _user(self, convert: Callable[[], tuple[Part, ...]]) -> tuple[tuple[Part, ...], _Plan]:
        """The user turn as parts, and the input check to run on it. Content that does not
        convert is handed to the judge as a builder that fails, so ``on_error`` decides it (and
        counts it) there, like any other failure."""
        try:
            parts = convert()
        except ContentError as exc:
            return (), ({"conversation": _failing(exc), "direction": "input"} if self.check_input else None)
        if not self.check_input or not parts:
            return parts, None
        return parts, {"user": parts, "direction": "input"}

    def _output(self, user: tuple[Part, ...], answer: str | None) -> _Plan:
        if not self.check_output or not answer or not answer.strip():
            return None
        return {"user": user or None, "assistant": answer, "direction": "output"}

    def _blocks(self, stage: str, verdict: Verdict | None, content: Any, what: str) -> bool:
        """True when the verdict blocks (and on_block is "refuse"); raises under "raise"."""
        if verdict is None or verdict.safe:
            return False
        if self.on_block == "raise":
            raise violation(stage, verdict, content, what)
        return True

    def _refusal(self, verdict: Verdict) -> str:
        return refusal_text(verdict, self.refusal_message)

    def _info(self, stage: str, verdict: Verdict) -> dict[str, Any]:
        window = verdict.details.get("stream_window")  # which part of a streamed answer blocked
        extra = {"window": list(window)} if window else {}
        return {"omniguard": verdict_info(verdict, stage=stage, blocked=True, **extra)}

    def _stream_guard(self, user: tuple[Part, ...], content: Any, **hooks: Any) -> StreamGuard:
        return StreamGuard(self.judge, self.stream_settings, user=user, mode=self.on_block,
                           refusal=self.refusal_message, content=content, **hooks)


class GuardedQueryEngine(_Rails, BaseQueryEngine):
    """Wraps any query engine. Settings (keyword-only): ``check_input``, ``check_output``,
    ``on_block`` ("refuse" | "raise"), ``refusal_message``, and for streamed answers
    ``window_chars``, ``step_chars``, ``max_unjudged_chars``, ``max_in_flight`` (the same in
    every door; see ``docs/streaming.md``)."""

    def __init__(self, query_engine: BaseQueryEngine, judge: OmniGuard | None = None, **settings: Unpack[Settings]) -> None:
        _Rails.__init__(self, judge, **settings)
        BaseQueryEngine.__init__(self, callback_manager=None)
        self.query_engine = query_engine

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self.query_engine}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return self._drive(self._query_steps(query_bundle))

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await self._adrive(self._query_steps(query_bundle))

    def _query_steps(self, query_bundle: QueryBundle) -> _Steps:
        user, plan = self._user(lambda: query_parts(query_bundle))
        verdict = yield _Judge(plan)
        if self._blocks("input", verdict, query_bundle, "query"):
            return self._refused("input", verdict)
        response = yield _Call(self.query_engine.query, self.query_engine.aquery, (query_bundle,))
        if isinstance(response, (StreamingResponse, AsyncStreamingResponse)):
            return self._streaming(user, response)
        verdict = yield _Judge(self._output(user, _text(response)))
        if self._blocks("output", verdict, response, "answer"):
            return self._refused("output", verdict)
        return response

    def _refused(self, stage: str, verdict: Verdict) -> Response:
        return Response(response=self._refusal(verdict), source_nodes=[], metadata=self._info(stage, verdict))

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

    def __init__(self, chat_engine: BaseChatEngine, judge: OmniGuard | None = None, **settings: Unpack[Settings]) -> None:
        _Rails.__init__(self, judge, **settings)
        self.chat_engine = chat_engine

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self.chat_engine.chat_history

    def reset(self) -> None:
        self.chat_engine.reset()

    def chat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
             **kwargs: Any) -> AGENT_CHAT_RESPONSE_TYPE:
        return self._drive(self._chat_steps(message, chat_history, kwargs))

    async def achat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
                    **kwargs: Any) -> AGENT_CHAT_RESPONSE_TYPE:
        return await self._adrive(self._chat_steps(message, chat_history, kwargs))

    def stream_chat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
                    **kwargs: Any) -> StreamingAgentChatResponse:
        return self._drive(self._stream_steps(message, chat_history, kwargs))

    async def astream_chat(self, message: str | ChatMessage, chat_history: list[ChatMessage] | None = None,
                           **kwargs: Any) -> StreamingAgentChatResponse:
        return await self._adrive(self._stream_steps(message, chat_history, kwargs))

    # ------------------------------------------------------------------ the operations, once

    def _chat_steps(self, message: Any, chat_history: Any, kwargs: dict[str, Any]) -> _Steps:
        user, plan = self._user(lambda: message_parts(message))
        verdict = yield _Judge(plan)
        if self._blocks("input", verdict, message, "message"):
            return self._refused("input", verdict)
        response = yield _Call(self.chat_engine.chat, self.chat_engine.achat, (message,),
                               {"chat_history": chat_history, **kwargs})
        verdict = yield _Judge(self._output(user, response.response))
        if self._blocks("output", verdict, response, "answer"):
            yield from self._scrub(response.response, self._refusal(verdict))
            return self._refused("output", verdict)
        return response

    def _stream_steps(self, message: Any, chat_history: Any, kwargs: dict[str, Any]) -> _Steps:
        user, plan = self._user(lambda: message_parts(message))
        verdict = yield _Judge(plan)
        if self._blocks("input", verdict, message, "message"):
            return GuardedStreamingChatResponse(None, fixed=self._refusal(verdict), metadata=self._info("input", verdict))
        inner = yield _Call(self.chat_engine.stream_chat, self.chat_engine.astream_chat, (message,),
                            {"chat_history": chat_history, **kwargs})
        return self._streaming(user, inner)

    def _scrub(self, answer: str | None, refusal: str) -> _Steps:
        """Swap the blocked answer for the refusal in the wrapped engine's memory."""
        memory = self._memory()
        if memory is None or not answer:
            return
        messages = yield _Call(memory.get_all, memory.aget_all)
        if _replaced(messages, answer, refusal):
            yield _Call(memory.set, memory.aset, (messages,))

    # ------------------------------------------------------------------ helpers

    def _refused(self, stage: str, verdict: Verdict) -> AgentChatResponse:
        return AgentChatResponse(response=self._refusal(verdict), metadata=self._info(stage, verdict))

    def _streaming(self, user: tuple[Part, ...], inner: StreamingAgentChatResponse) -> StreamingAgentChatResponse:
        if not self.check_output:
            return inner
        out = GuardedStreamingChatResponse(inner)

        def blocked(verdict: Verdict) -> None:
            out.metadata.update(self._info("output", verdict))
            self._drive(self._scrub(guard.rail.text, refusal_text(verdict, self.refusal_message)))

        async def ablocked(verdict: Verdict) -> None:
            out.metadata.update(self._info("output", verdict))
            await self._adrive(self._scrub(guard.rail.text, refusal_text(verdict, self.refusal_message)))

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


def _failing(exc: ContentError) -> Callable[[], Conversation]:
    """A conversation builder that raises the conversion's error inside the judge."""

    def build() -> Conversation:
        raise exc

    return build
