"""OmniGuardMiddleware: OmniGuard rails for agents built with ``langchain.agents.create_agent``.

Shaped like LangChain's ``OpenAIModerationMiddleware`` (same options, same exits, one decision
site: :meth:`OmniGuardMiddleware.apply`), with the whole multimodal message judged (text, images,
audio, video in one check) and tool results that carry media judged too. Each hook plans its
checks (core :class:`~omniguard_plugins.doors.Ask` requests), judges them in one ``check_many``
(so a turn's tool results and user message share a model batch) and decides; only the judge
call differs between the sync and the async hook.

Streaming never shows unjudged content: ``wrap_model_call`` runs the model call with a gate in
front of its callback handlers (see :mod:`._agent_stream`), so ``agent.stream``/``astream`` in
every mode, ``astream_events`` and ``stream_events(version="v3")``, and a user's own callbacks
see model text, tool-call arguments, media and ``on_llm_end`` only once judged, whatever model
the agent was given; ``wrap_tool_call`` judges a tool's result before the tools node hands it
on, and a stream transformer does the same for the v3 ``tools`` channel. ``after_model`` only
judges a reply no ``wrap_model_call`` saw (another middleware answered for the model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from langchain.agents.middleware.types import AgentMiddleware, AgentState, ModelRequest, ModelResponse, hook_config
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from omniguard_plugins import OmniGuard, Policy, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.doors import summarize
from omniguard_plugins.errors import ContentError
from omniguard_plugins.streaming import StreamSettings

from ._agent_stream import ModelGate, transformer_factory
from ._convert import has_content, parts_of
from ._judging import (
    AskSettings,
    Check,
    ExitBehavior,
    ajudge_and_record,
    blocking,
    judge_and_record,
    resolve_judge,
)
from ._stream import OutputRail, has_output

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from langgraph.prebuilt.tool_node import ToolCallRequest
    from langgraph.runtime import Runtime
    from langgraph.types import Command

#: where a judged message carries its verdict (``response_metadata``), so no hook judges it twice
MARK = "omniguard"

__all__ = ["OmniGuardMiddleware"]


@dataclass(frozen=True)
class _Planned:
    check: Check
    #: positions in state["messages"] of the judged messages
    indices: tuple[int, ...]


def _last_index(messages: Sequence[BaseMessage], kind: type[BaseMessage], before: int | None = None) -> int | None:
    end = len(messages) if before is None else before
    for i in range(end - 1, -1, -1):
        if isinstance(messages[i], kind):
            return i
    return None


@dataclass(frozen=True)
class _Unjudged:
    """A model call's reply (at ``idx`` in ``response``) and its check."""

    response: ModelResponse
    idx: int
    check: Check

    def judged(self, guard: OmniGuardMiddleware, verdict: Verdict) -> ModelResponse:
        result = list(self.response.result)
        result[self.idx] = guard.apply(self.check, verdict, result[self.idx])
        if verdict.safe:
            return ModelResponse(result=result, structured_response=self.response.structured_response)
        return ModelResponse(result=[result[self.idx]])  # the blocked reply's text never reaches the history


def _blocked_mark(message: BaseMessage) -> bool:
    info = message.response_metadata.get(MARK)
    return isinstance(info, dict) and info.get("safe") is False


class OmniGuardMiddleware(AgentMiddleware[AgentState[Any], Any]):
    """Judge an agent's user input, tool results and model output with OmniGuard.

    ``before_model`` judges new user messages (``check_input``); ``wrap_tool_call`` each tool
    result, media included (``check_tool_results``); ``wrap_model_call`` the model's reply in
    the context of the user's message (``check_output``), while it streams: ``window_chars``,
    ``step_chars``, ``max_unjudged_chars`` and ``max_in_flight`` work as in every door (see
    ``docs/streaming.md``). On an unsafe verdict ``exit_behavior`` decides: ``"end"``
    (default) ends the run with ``violation_message`` as the final AI message (an unsafe reply
    or tool result is replaced, not kept in the history); ``"error"`` raises
    :class:`~omniguard_plugins.errors.GuardViolation`; ``"replace"`` swaps the offending
    message's content for ``violation_message`` and lets the agent go on (a blocked reply
    keeps no tool calls). ``violation_message`` may use ``{categories}`` and ``{critique}``;
    streamed after text already shown, the refusal starts a new paragraph. Judged messages carry
    the core's verdict summary in ``response_metadata["omniguard"]``.

    :meth:`tool_check`, :meth:`judge_checks` / :meth:`ajudge_checks` and :meth:`apply` are the
    pieces every hook (and the v3 tools transformer) is made of.
    """

    def __init__(
        self,
        *,
        judge: OmniGuard | None = None,
        check_input: bool = True,
        check_output: bool = True,
        check_tool_results: bool = False,
        exit_behavior: ExitBehavior = "end",
        violation_message: str | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        mode: Literal["verdict", "critique", "score"] | None = None,
        window_chars: int = StreamSettings.window_chars,
        step_chars: int = StreamSettings.step_chars,
        max_unjudged_chars: int = StreamSettings.max_unjudged_chars,
        max_in_flight: int = StreamSettings.max_in_flight,
    ) -> None:
        super().__init__()
        self.block = blocking(exit_behavior, violation_message)  # ConfigError for an unknown exit_behavior
        self.judge = judge
        self.check_input = check_input
        self.check_output = check_output
        self.check_tool_results = check_tool_results
        self.exit_behavior = exit_behavior
        self.violation_message = violation_message
        self.policy = policy
        self.mode = mode
        self.asking = AskSettings(policy, mode, self.block)
        self.stream_settings = StreamSettings(window_chars, step_chars, max_unjudged_chars, max_in_flight)
        self._judge: OmniGuard | None = None
        if check_tool_results:
            self.transformers = (transformer_factory(self),)

    @property
    def omniguard(self) -> OmniGuard:
        if self._judge is None:
            self._judge = resolve_judge(self.judge)
        return self._judge

    # ----------------------------------------------------------------- the one decision

    def apply(self, check: Check, verdict: Verdict, target: BaseMessage) -> BaseMessage:
        """What a judged message becomes: itself, marked with the verdict's summary (safe); the
        refusal in its place (a blocked reply keeps neither its text nor its tool calls, and
        keeps its id, so it overwrites what was streamed); or GuardViolation (``"error"``).
        Whether the run then ends is the caller's: ``"end"`` ends it."""
        decision = self.block.decide(verdict, check.stage, check.content)
        mark = {MARK: summarize(verdict, check.stage).to_json()}
        if decision.allowed:
            return target.model_copy(update={"response_metadata": {**target.response_metadata, **mark}})
        if isinstance(target, AIMessage):
            return AIMessage(content=decision.text or "", id=target.id, response_metadata=mark)
        metadata = {**target.response_metadata, **mark}
        return target.model_copy(update={"content": decision.text or "", "response_metadata": metadata})

    @property
    def _ends(self) -> bool:
        return self.block.action == "refuse"

    # ----------------------------------------------------------------- checks

    def judge_checks(self, checks: Sequence[Check]) -> list[Verdict]:
        """Judge checks in one batch and tell callbacks (the only sync/async difference)."""
        return judge_and_record(self.omniguard, checks, [None] * len(checks))

    async def ajudge_checks(self, checks: Sequence[Check]) -> list[Verdict]:
        return await ajudge_and_record(self.omniguard, checks, [None] * len(checks))

    def tool_check(self, message: ToolMessage) -> Check | None:
        """The check of a tool result, or None (tool results are not judged, it has no
        content, or it was judged already)."""
        if not self.check_tool_results or not has_content(message) or MARK in message.response_metadata:
            return None
        return self.asking.check("tool", message, lambda: Conversation((Turn("user", parts_of(message)),)))

    def _plan_before(self, messages: Sequence[BaseMessage]) -> list[_Planned]:
        last_ai = _last_index(messages, AIMessage)
        since = 0 if last_ai is None else last_ai + 1  # what arrived since the model last spoke
        plans: list[_Planned] = []
        for i in range(since, len(messages)):
            msg = messages[i]
            if isinstance(msg, ToolMessage) and (check := self.tool_check(msg)) is not None:
                plans.append(_Planned(check, (i,)))  # a result no wrap_tool_call judged (e.g. in the input state)
        if self.check_input:
            users = tuple(i for i in range(since, len(messages)) if isinstance(messages[i], HumanMessage))
            if users:
                def build() -> Conversation:
                    return Conversation((Turn("user", tuple(p for i in users for p in parts_of(messages[i]))),))

                plans.append(_Planned(self.asking.check("input", messages[users[-1]], build), users))
        return plans

    def _user_turn(self, messages: Sequence[BaseMessage], before: int | None = None) -> tuple[Turn, ...]:
        asked = _last_index(messages, HumanMessage, before=before)
        if asked is None:
            return ()
        try:
            return (Turn("user", parts_of(messages[asked])),)
        except ContentError:
            return ()  # the input check has already failed closed on it

    def _plan_after(self, messages: Sequence[BaseMessage]) -> list[_Planned]:
        idx = _last_index(messages, AIMessage)
        if not self.check_output or idx is None or MARK in messages[idx].response_metadata:
            return []
        reply = messages[idx]
        out = self._output_rail(self._user_turn(messages, before=idx))
        return [_Planned(out.whole_check(reply), (idx,))] if has_output(reply) else []

    def _decide(
        self, messages: Sequence[BaseMessage], plans: list[_Planned], verdicts: list[Verdict]
    ) -> dict[str, Any] | None:
        """A hook's state update: blocked messages replaced; under "end" the run ends with the
        refusal (an unsafe reply is overwritten, same id; an unsafe tool result replaced)."""
        replaced: list[BaseMessage] = []
        for plan, verdict in zip(plans, verdicts):
            if verdict.safe:
                continue
            blocked = [self.apply(plan.check, verdict, messages[i]) for i in plan.indices]
            if self._ends:
                if plan.check.stage == "output":
                    return {"jump_to": "end", "messages": blocked[:1]}
                tools = blocked if plan.check.stage == "tool" else []
                return {"jump_to": "end", "messages": [*replaced, *tools, AIMessage(content=blocked[0].content)]}
            replaced.extend(blocked)
        ended = self._ended_by_tool(messages)
        if ended is not None:
            return {"jump_to": "end", "messages": [*replaced, ended]}
        return {"messages": replaced} if replaced else None

    def _ended_by_tool(self, messages: Sequence[BaseMessage]) -> AIMessage | None:
        """Under "end", a tool result wrap_tool_call blocked (and replaced) ends the run here."""
        if not self._ends:
            return None
        last_ai = _last_index(messages, AIMessage)
        for msg in messages[(last_ai or -1) + 1 :]:
            if isinstance(msg, ToolMessage) and _blocked_mark(msg):
                return AIMessage(content=msg.content)
        return None

    # ----------------------------------------------------------------- the model's reply, while it streams

    def _output_rail(self, user: tuple[Turn, ...], *, is_async: bool = False) -> OutputRail:
        return OutputRail(self.omniguard, self.stream_settings, user, asking=self.asking, is_async=is_async)

    def _gate(self, request: ModelRequest, *, is_async: bool) -> ModelGate:
        user = self._user_turn(request.messages)
        return ModelGate(lambda: self._output_rail(user, is_async=is_async), self.apply, is_async=is_async)

    @staticmethod
    @contextlib.contextmanager
    def _running(gate: ModelGate) -> Iterator[None]:
        """The model call, gated; the gate's own stop (or what a retry or fallback made of it)
        is the gate's to answer."""
        try:
            with gate.installed():
                yield
        except Exception:
            if gate.stopped is None:
                raise

    def _answer(self, gate: ModelGate, response: ModelResponse | None) -> ModelResponse | _Unjudged:
        """The model call's answer, or the reply still to be judged whole (no model run the gate
        saw produced it: another middleware answered)."""
        if gate.stopped is not None:
            if gate.stopped.error is not None:
                raise gate.stopped.error
            return ModelResponse(result=[gate.stopped.answer] if gate.stopped.answer is not None else [])
        assert response is not None
        idx = _last_index(response.result, AIMessage)
        if idx is None:
            return response
        reply = response.result[idx]
        run = gate.last
        verdict = run.verdict if run is not None else None
        if verdict is None and not has_output(reply):
            return response
        out = run.out if run is not None else self._output_rail(self._user_turn(response.result))
        unjudged = _Unjudged(response, idx, out.whole_check(reply))
        return unjudged if verdict is None else unjudged.judged(self, verdict)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        if not self.check_output:
            return handler(request)
        gate, response = self._gate(request, is_async=False), None
        with self._running(gate):
            response = handler(request)
        answer = self._answer(gate, response)
        if isinstance(answer, ModelResponse):
            return answer
        return answer.judged(self, self.judge_checks([answer.check])[0])

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        if not self.check_output:
            return await handler(request)
        gate, response = self._gate(request, is_async=True), None
        with self._running(gate):
            response = await handler(request)
        answer = self._answer(gate, response)
        if isinstance(answer, ModelResponse):
            return answer
        return answer.judged(self, (await self.ajudge_checks([answer.check]))[0])

    # ----------------------------------------------------------------- tool results, before the tools node hands on

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        result = handler(request)
        if not isinstance(result, ToolMessage) or (check := self.tool_check(result)) is None:
            return result
        return self.apply(check, self.judge_checks([check])[0], result)  # type: ignore[return-value]

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]
    ) -> ToolMessage | Command[Any]:
        result = await handler(request)
        if not isinstance(result, ToolMessage) or (check := self.tool_check(result)) is None:
            return result
        return self.apply(check, (await self.ajudge_checks([check]))[0], result)  # type: ignore[return-value]

    # ----------------------------------------------------------------- hooks

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_before(messages)
        return self._decide(messages, plans, self.judge_checks([p.check for p in plans]))

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_before(messages)
        return self._decide(messages, plans, await self.ajudge_checks([p.check for p in plans]))

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_after(messages)
        return self._decide(messages, plans, self.judge_checks([p.check for p in plans])) if plans else None

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_after(messages)
        return self._decide(messages, plans, await self.ajudge_checks([p.check for p in plans])) if plans else None
