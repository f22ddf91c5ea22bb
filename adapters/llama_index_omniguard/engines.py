"""GuardedQueryEngine / GuardedChatEngine: an input rail before the wrapped engine runs (so an
unsafe query never reaches retrieval), an output rail on its answer, and streamed answers through
the core stream rail (nothing is shown before its verdict).

    safe = GuardedQueryEngine(index.as_query_engine())
    safe_chat = GuardedChatEngine(index.as_chat_engine())

A block answers with ``refusal_message`` (``on_block="refuse"``, the default) or raises
:class:`~omniguard_plugins.errors.GuardViolation` (``on_block="raise"``). The verdict of a
refused answer is in ``response.metadata["omniguard"]``.

Each operation is written once, as a generator of steps (:mod:`._steps`: ``Judge``, a check to
run as a :class:`~omniguard_plugins.doors.Ask`; ``Call``, a call into the wrapped engine or its
memory, with its sync and async twin); ``drive`` and ``adrive`` are the only places sync and async
differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

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
from omniguard_plugins.doors import DEFAULT_REFUSAL, Ask, Stage
from omniguard_plugins.errors import ContentError
from omniguard_plugins.policy import Policy
from omniguard_plugins.streaming import StreamSettings
from omniguard_plugins.verdict import Mode

from ._blocking import JudgeRef, blocking, check_mode, judge_argument, verdict_metadata
from ._convert import failing, message_parts, query_parts
from ._steps import Call, Judge, Steps, adrive, drive
from ._stream import GuardedStreamingChatResponse, OnBlock, StreamGuard

if TYPE_CHECKING:  # typing.Unpack is 3.11+; annotations are never evaluated at run time
    from typing_extensions import Unpack

__all__ = ["GuardedChatEngine", "GuardedQueryEngine"]

_DEFAULT_STREAM = StreamSettings()


class Settings(TypedDict, total=False):
    """The keyword-only settings of both guarded engines (defaults in :class:`_Rails`)."""

    check_input: bool
    check_output: bool
    on_block: OnBlock
    refusal_message: str
    policy: Any
    mode: Mode
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
        policy: Policy | dict[str, Any] | None = None,
        mode: Mode | None = None,
        window_chars: int = _DEFAULT_STREAM.window_chars,
        step_chars: int = _DEFAULT_STREAM.step_chars,
        max_unjudged_chars: int = _DEFAULT_STREAM.max_unjudged_chars,
        max_in_flight: int = _DEFAULT_STREAM.max_in_flight,
    ) -> None:
        check_mode(mode)
        self.blocking = blocking(on_block, ("refuse", "raise"), "on_block", refusal_message)
        self._judge_ref = JudgeRef(judge)
        self.check_input = check_input
        self.check_output = check_output
        self.on_block = on_block
        self.refusal_message = refusal_message
        self.policy = policy
        self.mode = mode
        # fails on bad window settings now, not on the first streamed answer
        self.stream_settings = StreamSettings(window_chars, step_chars, max_unjudged_chars, max_in_flight)

    @property
    def judge(self) -> OmniGuard:
        """The judge handed in, else the shared one, resolved once (not per access)."""
        return self._judge_ref()

    def _drive(self, steps: Steps) -> Any:
        return drive(steps, self._judge_ref)

    async def _adrive(self, steps: Steps) -> Any:
        return await adrive(steps, self._judge_ref)

    # ------------------------------------------------------------------ checks and the decision

    def _ask(self, stage: Stage, **content: Any) -> Ask:
        return Ask(stage=stage, policy=self.policy, mode=self.mode, explain=self.blocking.explain, **content)

    def _user(self, convert: Callable[[], tuple[Part, ...]]) -> tuple[tuple[Part, ...], Ask | None]:
        """The user turn as parts, and the input check to run on it. Content that does not
        convert is handed to the judge as a builder that fails, so ``on_error`` decides it (and
        counts it) there, like any other failure."""
        try:
            parts = convert()
        except ContentError as exc:
            return (), (self._ask("input", conversation=failing(exc)) if self.check_input else None)
        if not self.check_input or not parts:
            return parts, None
        return parts, self._ask("input", user=parts)

    def _output(self, user: tuple[Part, ...], answer: str | None) -> Ask | None:
        if not self.check_output or not answer or not answer.strip():
            return None
        return self._ask("output", user=user or None, assistant=answer)

    def _blocks(self, stage: Stage, verdict: Verdict | None, content: Any) -> bool:
        """The one decision site: True when the verdict blocks under "refuse"; raises under "raise"."""
        return verdict is not None and self.blocking.decide(verdict, stage, content).blocked

    def _refusal(self, verdict: Verdict) -> str:
        return self.blocking.refusal(verdict)

    def _info(self, stage: Stage, verdict: Verdict) -> dict[str, Any]:
        window = verdict.details.get("stream_window")  # which part of a streamed answer blocked
        extra = {"window": list(window)} if window else {}
        return {"omniguard": verdict_metadata(verdict, stage, blocked=True, **extra)}

    def _stream_guard(self, user: tuple[Part, ...], content: Any, **hooks: Any) -> StreamGuard:
        return StreamGuard(self.judge, self.stream_settings, user=user, on_block=self.on_block,
                           refusal=self.refusal_message, content=content, policy=self.policy, mode=self.mode, **hooks)


class GuardedQueryEngine(_Rails, BaseQueryEngine):
    """Wraps any query engine. Settings (keyword-only): ``judge``, ``check_input``,
    ``check_output``, ``on_block`` ("refuse" | "raise"), ``refusal_message``, ``policy``,
    ``mode``, and for streamed answers ``window_chars``, ``step_chars``, ``max_unjudged_chars``,
    ``max_in_flight`` (the same in every door; see ``docs/streaming.md``). A judge passed by
    position still works (deprecated)."""

    def __init__(self, query_engine: BaseQueryEngine, *args: OmniGuard, judge: OmniGuard | None = None,
                 **settings: Unpack[Settings]) -> None:
        _Rails.__init__(self, judge_argument(args, judge, "GuardedQueryEngine"), **settings)
        BaseQueryEngine.__init__(self, callback_manager=None)
        self.query_engine = query_engine

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self.query_engine}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return self._drive(self._query_steps(query_bundle))

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await self._adrive(self._query_steps(query_bundle))

    def _query_steps(self, query_bundle: QueryBundle) -> Steps:
        user, plan = self._user(lambda: query_parts(query_bundle))
        verdict = yield Judge(plan)
        if self._blocks("input", verdict, query_bundle):
            return self._refused("input", verdict)
        response = yield Call(self.query_engine.query, self.query_engine.aquery, (query_bundle,))
        if isinstance(response, (StreamingResponse, AsyncStreamingResponse)):
            return self._streaming(user, response)
        verdict = yield Judge(self._output(user, _text(response)))
        if self._blocks("output", verdict, response):
            return self._refused("output", verdict)
        return response

    def _refused(self, stage: Stage, verdict: Verdict) -> Response:
        return Response(response=self._refusal(verdict), source_nodes=[], metadata=self._info(stage, verdict))

    def _streaming(self, user: tuple[Part, ...], response: StreamingResponse | AsyncStreamingResponse) -> RESPONSE_TYPE:
        if not self.check_output:
            return response
        metadata = dict(response.metadata or {})

        def blocked(verdict: Verdict) -> None:
            metadata.update(self._info("output", verdict))

        guard = self._stream_guard(user, response, after_block=blocked)
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

    def __init__(self, chat_engine: BaseChatEngine, *args: OmniGuard, judge: OmniGuard | None = None,
                 **settings: Unpack[Settings]) -> None:
        _Rails.__init__(self, judge_argument(args, judge, "GuardedChatEngine"), **settings)
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

    def _chat_steps(self, message: Any, chat_history: Any, kwargs: dict[str, Any]) -> Steps:
        user, plan = self._user(lambda: message_parts(message))
        verdict = yield Judge(plan)
        if self._blocks("input", verdict, message):
            return self._refused("input", verdict)
        response = yield Call(self.chat_engine.chat, self.chat_engine.achat, (message,),
                               {"chat_history": chat_history, **kwargs})
        verdict = yield Judge(self._output(user, response.response))
        if self._blocks("output", verdict, response):
            yield from self._scrub(response.response, self._refusal(verdict))
            return self._refused("output", verdict)
        return response

    def _stream_steps(self, message: Any, chat_history: Any, kwargs: dict[str, Any]) -> Steps:
        user, plan = self._user(lambda: message_parts(message))
        verdict = yield Judge(plan)
        if self._blocks("input", verdict, message):
            return GuardedStreamingChatResponse(None, fixed=self._refusal(verdict),
                                                metadata=self._info("input", verdict))
        inner = yield Call(self.chat_engine.stream_chat, self.chat_engine.astream_chat, (message,),
                            {"chat_history": chat_history, **kwargs})
        return self._streaming(user, inner)

    def _scrub(self, answer: str | None, refusal: str) -> Steps:
        """Swap the blocked answer for the refusal in the wrapped engine's memory."""
        memory = self._memory()
        if memory is None or not answer:
            return
        messages = yield Call(memory.get_all, memory.aget_all)
        if _replaced(messages, answer, refusal):
            yield Call(memory.set, memory.aset, (messages,))

    # ------------------------------------------------------------------ helpers

    def _refused(self, stage: Stage, verdict: Verdict) -> AgentChatResponse:
        return AgentChatResponse(response=self._refusal(verdict), metadata=self._info(stage, verdict))

    def _streaming(self, user: tuple[Part, ...], inner: StreamingAgentChatResponse) -> StreamingAgentChatResponse:
        if not self.check_output:
            return inner
        out = GuardedStreamingChatResponse(inner)

        def blocked(verdict: Verdict) -> None:
            out.metadata.update(self._info("output", verdict))
            self._drive(self._scrub(guard.rail.text, self._refusal(verdict)))

        async def ablocked(verdict: Verdict) -> None:
            out.metadata.update(self._info("output", verdict))
            await self._adrive(self._scrub(guard.rail.text, self._refusal(verdict)))

        guard = self._stream_guard(user, inner, after_block=blocked, aafter_block=ablocked)
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
