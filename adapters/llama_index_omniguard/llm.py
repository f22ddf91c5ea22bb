"""OmniGuardLLM: any LlamaIndex LLM, guarded, so every agent, engine and workflow that uses it is.

    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index_omniguard import OmniGuardLLM
    agent = FunctionAgent(tools=[...], llm=OmniGuardLLM(OpenAI(model="gpt-4o")))

Every call the wrapped LLM would answer is judged on the way in and out:

- **In** (before the inner LLM sees anything): what it has not answered yet, i.e. every message
  after its last answer. The user's message is judged at stage ``input``; each tool result
  (text, ``ImageBlock``, ``AudioBlock``, ``VideoBlock``, text ``DocumentBlock``) at stage
  ``tool``. System prompts are the app's and are not judged. A blocked message is remembered:
  when a later call's history still holds it (an agent's memory keeps the refused turn), the
  inner LLM reads a placeholder in its place (:mod:`._withheld`).
- **Out** (before the caller can act on it): the whole answer, its text, reasoning, media
  (``AudioBlock`` judged as audio) *and its tool calls* (rendered by the core's
  ``render_tool_call``), at stage ``output`` in the context of the user's message. A blocked
  answer has no tool calls, so an agent never runs an unsafe one.
- **Streams** (``stream_chat``, ``astream_chat``, the tool-calling streams, so an agent's
  ``AgentStream`` events): through the core stream rail; see :mod:`._llm_stream`.

A block answers with the refusal (``on_unsafe="refuse"``, the default; ``refusal_message`` is
the template) as an assistant message without tool calls, the verdict summary in the response's
``additional_kwargs["omniguard"]`` and ``raw["omniguard"]``; or raises
:class:`~omniguard_plugins.errors.GuardViolation` (``on_unsafe="raise"``). ``metadata`` and
``get_tool_calls_from_response`` are the inner LLM's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Part, Turn
from omniguard_plugins.doors import Ask, Blocking, Decision, Stage
from omniguard_plugins.errors import ConfigError, ContentError
from omniguard_plugins.streaming import StreamSettings
from omniguard_plugins.verdict import Mode

from ._blocking import JudgeRef, blocking, check_mode
from ._convert import answer_parts, failing, message_parts
from ._llm_stream import AnswerStream, Response, refused_response
from ._steps import Call, Judge, Steps, adrive, drive
from ._withheld import Withheld

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["OmniGuardLLM", "OnUnsafeAnswer"]

#: how OmniGuardLLM blocks: answer with the refusal (no tool calls), or raise GuardViolation
OnUnsafeAnswer = Literal["refuse", "raise"]

_ANSWERS = (MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL)
_TOOL_RESULTS = (MessageRole.TOOL, MessageRole.FUNCTION)
_DEFAULT_STREAM = StreamSettings()
_Opened = Union[Decision, Any]  # a stream step's result: the input's refusal, or the inner stream


class OmniGuardLLM(FunctionCallingLLM):
    """A guarded LlamaIndex LLM (function-calling or not; see the module docstring).

    ``judge=``: default ``OmniGuard.shared()``, resolved on first use. ``on_unsafe``: "refuse" |
    "raise". ``check_input`` / ``check_tool_results`` / ``check_output`` switch the three rails.
    ``policy`` and ``mode`` go into every check. ``window_chars``, ``step_chars``,
    ``max_unjudged_chars``, ``max_in_flight``: the stream rail's settings (docs/streaming.md).
    """

    llm: SerializeAsAny[LLM] = Field(description="the wrapped LLM")
    on_unsafe: OnUnsafeAnswer = "refuse"
    refusal_message: Optional[str] = Field(default=None, description="template; default: the core's refusal")
    check_input: bool = True
    check_tool_results: bool = True
    check_output: bool = True
    policy: Optional[Any] = Field(default=None, exclude=True)
    mode: Optional[Mode] = None

    _judge_ref: JudgeRef = PrivateAttr()
    _withheld: Withheld = PrivateAttr(default_factory=Withheld)
    _blocking: Blocking = PrivateAttr()
    _stream: StreamSettings = PrivateAttr()

    def __init__(
        self,
        llm: LLM,
        judge: OmniGuard | None = None,
        *,
        on_unsafe: OnUnsafeAnswer = "refuse",
        refusal_message: str | None = None,
        check_input: bool = True,
        check_tool_results: bool = True,
        check_output: bool = True,
        policy: Any = None,
        mode: Mode | None = None,
        window_chars: int = _DEFAULT_STREAM.window_chars,
        step_chars: int = _DEFAULT_STREAM.step_chars,
        max_unjudged_chars: int = _DEFAULT_STREAM.max_unjudged_chars,
        max_in_flight: int = _DEFAULT_STREAM.max_in_flight,
    ) -> None:
        if not isinstance(llm, LLM):
            raise ConfigError(f"OmniGuardLLM wraps a LlamaIndex LLM, got {type(llm).__name__}")
        check_mode(mode)
        chosen = blocking(on_unsafe, ("refuse", "raise"), "on_unsafe", refusal_message)
        stream = StreamSettings(window_chars, step_chars, max_unjudged_chars, max_in_flight)
        super().__init__(
            llm=llm, on_unsafe=on_unsafe, refusal_message=refusal_message, check_input=check_input,
            check_tool_results=check_tool_results, check_output=check_output, policy=policy, mode=mode,
            # the inner LLM's own prompt settings, so predict() and friends format prompts as it would
            callback_manager=llm.callback_manager, system_prompt=llm.system_prompt,
            messages_to_prompt=llm.messages_to_prompt, completion_to_prompt=llm.completion_to_prompt,
            pydantic_program_mode=llm.pydantic_program_mode, query_wrapper_prompt=llm.query_wrapper_prompt,
            output_parser=llm.output_parser,
        )
        self._judge_ref = JudgeRef(judge)
        self._blocking = chosen
        self._stream = stream

    @classmethod
    def class_name(cls) -> str:
        return "OmniGuardLLM"

    @property
    def judge(self) -> OmniGuard:
        """The judge handed in, else the shared one, resolved once."""
        return self._judge_ref()

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    # ------------------------------------------------------------------ chat and completion

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = Call(self.llm.chat, self.llm.achat, (messages,), kwargs)
        return drive(self._answer(messages, call), self._judge_ref)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = Call(self.llm.chat, self.llm.achat, (messages,), kwargs)
        return await adrive(self._answer(messages, call), self._judge_ref)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        call = Call(self.llm.complete, self.llm.acomplete, (prompt,), {"formatted": formatted, **kwargs})
        return drive(self._answer(_prompt(prompt), call, CompletionResponse), self._judge_ref)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        call = Call(self.llm.complete, self.llm.acomplete, (prompt,), {"formatted": formatted, **kwargs})
        return await adrive(self._answer(_prompt(prompt), call, CompletionResponse), self._judge_ref)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        call = Call(self.llm.stream_chat, self.llm.astream_chat, (messages,), kwargs)
        return self._guarded(messages, drive(self._open(messages, call), self._judge_ref), ChatResponse)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        call = Call(self.llm.stream_chat, self.llm.astream_chat, (messages,), kwargs)
        return self._aguarded(messages, await adrive(self._open(messages, call), self._judge_ref), ChatResponse)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        call = Call(self.llm.stream_complete, self.llm.astream_complete, (prompt,), {"formatted": formatted, **kwargs})
        opened = drive(self._open(_prompt(prompt), call), self._judge_ref)
        return self._guarded(_prompt(prompt), opened, CompletionResponse)

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        call = Call(self.llm.stream_complete, self.llm.astream_complete, (prompt,), {"formatted": formatted, **kwargs})
        opened = await adrive(self._open(_prompt(prompt), call), self._judge_ref)
        return self._aguarded(_prompt(prompt), opened, CompletionResponse)

    # ------------------------------------------------------------------ tool calling

    def chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                        chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                        allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                        **kwargs: Any) -> ChatResponse:
        messages, call = self._with_tools("chat_with_tools", tools, user_msg, chat_history, verbose,
                                          allow_parallel_tool_calls, tool_required, kwargs)
        return drive(self._answer(messages, call), self._judge_ref)

    async def achat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                               chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                               allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                               **kwargs: Any) -> ChatResponse:
        messages, call = self._with_tools("chat_with_tools", tools, user_msg, chat_history, verbose,
                                          allow_parallel_tool_calls, tool_required, kwargs)
        return await adrive(self._answer(messages, call), self._judge_ref)

    def stream_chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                               chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                               allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                               **kwargs: Any) -> ChatResponseGen:
        messages, call = self._with_tools("stream_chat_with_tools", tools, user_msg, chat_history, verbose,
                                          allow_parallel_tool_calls, tool_required, kwargs)
        return self._guarded(messages, drive(self._open(messages, call), self._judge_ref), ChatResponse)

    async def astream_chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                                      chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                      allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                      **kwargs: Any) -> ChatResponseAsyncGen:
        messages, call = self._with_tools("stream_chat_with_tools", tools, user_msg, chat_history, verbose,
                                          allow_parallel_tool_calls, tool_required, kwargs)
        return self._aguarded(messages, await adrive(self._open(messages, call), self._judge_ref), ChatResponse)

    def _with_tools(self, method: str, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None,
                    chat_history: list[ChatMessage] | None, verbose: bool, allow_parallel_tool_calls: bool,
                    tool_required: bool, kwargs: dict[str, Any]) -> tuple[list[ChatMessage], Call]:
        """The messages the call carries, and the inner LLM's own tool-calling method (sync and async)."""
        inner = self._tool_llm()
        call = Call(getattr(inner, method), getattr(inner, "a" + method), (tools,),
                    {"user_msg": user_msg, "chat_history": chat_history, "verbose": verbose,
                     "allow_parallel_tool_calls": allow_parallel_tool_calls, "tool_required": tool_required, **kwargs})
        return _history(user_msg, chat_history), call

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        return self._tool_llm().get_tool_calls_from_response(response, error_on_no_tool_call=error_on_no_tool_call,
                                                              **kwargs)

    def _prepare_chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                                 chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                 **kwargs: Any) -> dict[str, Any]:
        return self._tool_llm()._prepare_chat_with_tools_compat(
            tools, user_msg=user_msg, chat_history=chat_history, verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls, tool_required=tool_required, **kwargs)

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[BaseTool],
                                           allow_parallel_tool_calls: bool = False, **kwargs: Any) -> ChatResponse:
        return self._tool_llm()._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs)

    def _tool_llm(self) -> FunctionCallingLLM:
        if not isinstance(self.llm, FunctionCallingLLM):
            raise ConfigError(f"the wrapped LLM ({type(self.llm).__name__}) does not call tools; "
                              "wrap a FunctionCallingLLM, or use a ReActAgent")
        return self.llm

    # ------------------------------------------------------------------ one answer, written once

    def _answer(self, messages: Sequence[ChatMessage], call: Call,
                kind: type[Response] = ChatResponse) -> Steps:
        """Judge what is new, ask the inner LLM, judge its answer (tool calls included)."""
        refused = yield from self._judge_incoming(messages, kind)
        if refused is not None:
            return refused
        response = yield self._withheld.scrub(call)
        if not self.check_output:
            return response
        verdict = yield Judge(self._answer_ask(messages, response))
        decision = self._decide(verdict, "output", response)
        return response if decision is None else refused_response(kind, decision)

    def _open(self, messages: Sequence[ChatMessage], call: Call) -> Steps:
        """A stream's first steps: judge what is new, then open the inner stream."""
        refused = yield from self._judge_incoming(messages, None)
        if refused is not None:
            return refused
        return (yield self._withheld.scrub(call))

    def _judge_incoming(self, messages: Sequence[ChatMessage], kind: type[Response] | None) -> Steps:
        incoming = _incoming(messages)
        judged = self._incoming_asks(incoming)
        verdicts: list[Verdict] = (yield Judge([ask for ask, _ in judged])) or []
        for (ask, blocked), verdict in zip(judged, verdicts):
            decision = self._decide(verdict, ask.stage or "input", blocked)
            if decision is not None:
                self._withheld.add(blocked)
                return decision if kind is None else refused_response(kind, decision)
        return None

    def _incoming_asks(self, incoming: list[ChatMessage]) -> list[tuple[Ask, list[ChatMessage]]]:
        """One check for the user's message(s), one per tool result; each with what it judges."""
        groups: list[tuple[Stage, list[ChatMessage]]] = []
        users = [m for m in incoming if m.role == MessageRole.USER]
        if self.check_input and users:
            groups.append(("input", users))
        if self.check_tool_results:
            groups.extend(("tool", [m]) for m in incoming if m.role in _TOOL_RESULTS)
        return [(ask, messages) for stage, messages in groups for ask in self._ask_turns((("user", messages),), stage)]

    def _answer_ask(self, messages: Sequence[ChatMessage], response: Response) -> list[Ask]:
        context = [m for m in messages if m.role == MessageRole.USER][-1:]
        if isinstance(response, CompletionResponse):
            answer = ChatMessage(role=MessageRole.ASSISTANT, content=response.text)
            calls: Sequence[ToolSelection] | None = None
        else:
            answer, calls = response.message, self._calls(response)
        return self._ask_turns((("user", context), ("assistant", [answer], calls)), "output")

    def _ask_turns(self, turns: Iterable[tuple[Any, ...]], stage: Stage) -> list[Ask]:
        """One Ask over these turns; none when the judged turn is empty. Content that does not
        convert goes to the judge as a failing builder, so ``on_error`` decides it there."""
        built: list[Turn] = []
        try:
            for role, messages, *calls in turns:
                if role == "assistant":
                    parts: tuple[Part, ...] = answer_parts(messages[0], calls[0])
                else:
                    parts = tuple(p for m in messages for p in message_parts(m))
                if parts:
                    built.append(Turn(role, parts))
        except ContentError as exc:
            return [self._ask(failing(exc), stage)]
        judged = "assistant" if stage == "output" else "user"
        if not built or built[-1].role != judged:
            return []
        return [self._ask(Conversation(tuple(built)), stage)]

    def _ask(self, conversation: Any, stage: Stage) -> Ask:
        return Ask(conversation=conversation, stage=stage, policy=self.policy, mode=self.mode,
                   explain=self._blocking.explain)

    def _decide(self, verdict: Verdict | list[Verdict] | None, stage: Stage, content: Any) -> Decision | None:
        """The one decision site: None to go on; a Decision to refuse; GuardViolation under "raise"."""
        if isinstance(verdict, list):
            verdict = verdict[0] if verdict else None
        if verdict is None:
            return None
        decision = self._blocking.decide(verdict, stage, content)
        return decision if decision.blocked else None

    def _calls(self, response: ChatResponse) -> Sequence[ToolSelection] | None:
        """The tool calls as the inner LLM reads them; None (the message's ToolCallBlocks are
        judged instead) for an LLM that calls no tools, or one that keeps LlamaIndex's default
        reader, which only raises NotImplementedError."""
        if not isinstance(self.llm, FunctionCallingLLM) or \
                type(self.llm).get_tool_calls_from_response is FunctionCallingLLM.get_tool_calls_from_response:
            return None
        return self.llm.get_tool_calls_from_response(response, error_on_no_tool_call=False)

    # ------------------------------------------------------------------ streams

    def _stream_guard(self, messages: Sequence[ChatMessage], kind: type[Response]) -> AnswerStream:
        user: tuple[Part, ...] = ()
        context = [m for m in messages if m.role == MessageRole.USER][-1:]
        try:
            user = message_parts(context[0]) if context else ()
        except ContentError:
            pass  # the input rail already judged (and passed) it under on_error; the answer is judged alone
        return AnswerStream(self.judge, self._stream, self._blocking, kind=kind, user=user, policy=self.policy,
                            tool_calls=self._calls if kind is ChatResponse else None, mode=self.mode)

    def _guarded(self, messages: Sequence[ChatMessage], opened: _Opened, kind: type[Response]) -> Any:
        if isinstance(opened, Decision):
            return iter([refused_response(kind, opened)])
        if not self.check_output:
            return opened
        return self._stream_guard(messages, kind).wrap(opened)

    def _aguarded(self, messages: Sequence[ChatMessage], opened: _Opened, kind: type[Response]) -> Any:
        if isinstance(opened, Decision):
            return _one(refused_response(kind, opened))
        if not self.check_output:
            return opened
        return self._stream_guard(messages, kind).awrap(opened)


def _incoming(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """What the LLM has not answered yet: the messages after its last answer."""
    tail: list[ChatMessage] = []
    for message in reversed(messages):
        if message.role in _ANSWERS:
            break
        tail.append(message)
    return tail[::-1]


def _history(user_msg: str | ChatMessage | None, chat_history: Sequence[ChatMessage] | None) -> list[ChatMessage]:
    messages = list(chat_history or [])
    if user_msg is not None:
        messages.append(user_msg if isinstance(user_msg, ChatMessage) else ChatMessage(role=MessageRole.USER,
                                                                                         content=user_msg))
    return messages


def _prompt(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]


async def _one(response: Response) -> AsyncIterator[Response]:
    yield response
