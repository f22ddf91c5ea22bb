"""OmniGuardMiddleware: OmniGuard rails for agents built with ``langchain.agents.create_agent``.

Shaped like LangChain's ``OpenAIModerationMiddleware`` (same options, same exits), with the
whole multimodal message judged (text, images, audio, video in one check) and tool results
that carry media judged too. Each hook plans its checks, judges them in one ``check_many``
(so a turn's tool results and user message share a model batch) and decides; only the judge
call differs between the sync and the async hook.

Streaming never shows unjudged content: ``wrap_model_call`` runs the model's stream through the
core stream rail (see :mod:`._agent_stream`), so ``agent.stream``/``astream`` in every mode
(and ``stream_events(version="v3")``) see model text, tool-call arguments and media only once
judged; ``wrap_tool_call`` judges a tool's result before the tools node hands it on, and a
stream transformer does the same for the v3 ``tools`` channel. ``after_model`` only judges a
reply no ``wrap_model_call`` saw (another middleware answered for the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from langchain.agents.middleware.types import AgentMiddleware, AgentState, ModelRequest, ModelResponse, hook_config
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from omniguard_plugins import OmniGuard, Policy, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.errors import ConfigError, ContentError
from omniguard_plugins.streaming import StreamSettings

from ._agent_stream import ModelGate, gate_scope, guarded_model, transformer_factory
from ._convert import has_content, parts_of
from ._judging import (
    Check,
    ExitBehavior,
    Stage,
    ajudge_and_record,
    format_violation,
    judge_and_record,
    make_check,
    resolve_judge,
    violation,
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


def _mark(message: BaseMessage, stage: str, verdict: Verdict, **update: Any) -> BaseMessage:
    info = {"stage": stage, "label": verdict.label, "categories": list(verdict.category_codes)}
    return message.model_copy(update={**update, "response_metadata": {**message.response_metadata, MARK: info}})


def _blocked_mark(message: BaseMessage) -> bool:
    info = message.response_metadata.get(MARK)
    return isinstance(info, dict) and info.get("label") != "safe"


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
    keeps no tool calls). ``violation_message`` may use ``{categories}`` and ``{critique}``.
    Judged messages carry their verdict in ``response_metadata["omniguard"]``.
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
        if exit_behavior not in ("error", "end", "replace"):
            raise ConfigError(f"exit_behavior must be 'error', 'end' or 'replace', got {exit_behavior!r}")
        self.judge = judge
        self.check_input = check_input
        self.check_output = check_output
        self.check_tool_results = check_tool_results
        self.exit_behavior = exit_behavior
        self.violation_message = violation_message
        self.policy = policy
        self.mode = mode
        self.stream_settings = StreamSettings(window_chars, step_chars, max_unjudged_chars, max_in_flight)
        self._judge: OmniGuard | None = None
        if check_tool_results:
            self.transformers = (transformer_factory(self),)

    @property
    def omniguard(self) -> OmniGuard:
        if self._judge is None:
            self._judge = resolve_judge(self.judge)
        return self._judge

    @property
    def _template(self) -> str | None:
        return self.violation_message if self.exit_behavior != "error" else None

    # ----------------------------------------------------------------- plans

    def _plan(self, stage: Stage, content: Any, indices: tuple[int, ...], conversation: Any) -> _Planned:
        direction = "output" if stage == "output" else "input"
        check = make_check(stage, content, conversation, direction=direction,
                        policy=self.policy, mode=self.mode, template=self._template)
        return _Planned(check, indices)

    def _plan_tool(self, message: ToolMessage, index: int = -1) -> _Planned | None:
        if not self.check_tool_results or not has_content(message) or MARK in message.response_metadata:
            return None
        return self._plan("tool", message, (index,), lambda: Conversation((Turn("user", parts_of(message)),)))

    def _plan_before(self, messages: Sequence[BaseMessage]) -> list[_Planned]:
        last_ai = _last_index(messages, AIMessage)
        since = 0 if last_ai is None else last_ai + 1  # what arrived since the model last spoke
        plans: list[_Planned] = []
        for i in range(since, len(messages)):
            msg = messages[i]
            if isinstance(msg, ToolMessage) and (plan := self._plan_tool(msg, i)) is not None:
                plans.append(plan)  # a result no wrap_tool_call judged (e.g. in the input state)
        if self.check_input:
            users = tuple(i for i in range(since, len(messages)) if isinstance(messages[i], HumanMessage))
            if users:
                def build() -> Conversation:
                    return Conversation((Turn("user", tuple(p for i in users for p in parts_of(messages[i]))),))

                plans.append(self._plan("input", messages[users[-1]], users, build))
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

    # ----------------------------------------------------------------- the decisions

    def _decide(
        self, messages: Sequence[BaseMessage], plans: list[_Planned], verdicts: list[Verdict]
    ) -> dict[str, Any] | None:
        replaced: list[BaseMessage] = []
        for plan, verdict in zip(plans, verdicts):
            if verdict.safe:
                continue
            if self.exit_behavior == "error":
                raise violation(plan.check, verdict)
            text = format_violation(self.violation_message, verdict)
            blocked = [_mark(messages[i], plan.check.stage, verdict, content=text) for i in plan.indices]
            if self.exit_behavior == "end":
                # an unsafe reply is overwritten (same id), an unsafe tool result replaced: neither stays
                if plan.check.stage == "output":
                    return {"jump_to": "end", "messages": [_mark(AIMessage(content=text, id=blocked[0].id), "output",
                                                                 verdict)]}
                return {"jump_to": "end", "messages": [*replaced, *(b for b in blocked if plan.check.stage == "tool"),
                                                       AIMessage(content=text)]}
            replaced.extend(blocked)
        ended = self._ended_by_tool(messages)
        if ended is not None:
            return {"jump_to": "end", "messages": [*replaced, ended]}
        return {"messages": replaced} if replaced else None

    def _ended_by_tool(self, messages: Sequence[BaseMessage]) -> AIMessage | None:
        """Under "end", a tool result wrap_tool_call blocked (and replaced) ends the run here."""
        if self.exit_behavior != "end":
            return None
        last_ai = _last_index(messages, AIMessage)
        for msg in messages[(last_ai or -1) + 1 :]:
            if isinstance(msg, ToolMessage) and _blocked_mark(msg):
                return AIMessage(content=msg.content)
        return None

    def _tool_result(self, message: ToolMessage, plan: _Planned, verdict: Verdict) -> ToolMessage:
        """A judged tool result: marked, and replaced when unsafe (or raise under "error")."""
        if verdict.safe:
            return _mark(message, "tool", verdict)  # type: ignore[return-value]
        if self.exit_behavior == "error":
            raise violation(plan.check, verdict)
        return _mark(message, "tool", verdict, content=format_violation(self.violation_message, verdict))  # type: ignore[return-value]

    def _judge_sync(self, plans: list[_Planned]) -> list[Verdict]:
        return judge_and_record(self.omniguard, [p.check for p in plans], [None] * len(plans))

    async def _judge_async(self, plans: list[_Planned]) -> list[Verdict]:
        return await ajudge_and_record(self.omniguard, [p.check for p in plans], [None] * len(plans))

    # ----------------------------------------------------------------- the model's reply, while it streams

    def _output_rail(self, user: tuple[Turn, ...], *, is_async: bool = False) -> OutputRail:
        return OutputRail(self.omniguard, self.stream_settings, user, policy=self.policy, mode=self.mode,
                          template=self._template, is_async=is_async, unwrap=lambda g: g.message)

    def _gate(self, request: ModelRequest, *, is_async: bool) -> ModelGate:
        user = self._user_turn(request.messages)
        return ModelGate(lambda: self._output_rail(user, is_async=is_async), self.exit_behavior,
                         self.violation_message, user)

    def _reply_plan(self, gate: ModelGate, response: ModelResponse) -> tuple[int, _Planned | None, Verdict | None]:
        """The reply's index in the response, and its check (did not stream) or its verdict."""
        idx = _last_index(response.result, AIMessage)
        if idx is None:
            return -1, None, None
        if gate.out is not None and gate.out.streaming and gate.out.chunks:
            blocked = gate.out.blocked()
            return idx, (_Planned(blocked[0], (idx,)) if blocked else None), (blocked[1] if blocked else _SAFE)
        reply = response.result[idx]
        if not has_output(reply):
            return idx, None, None
        return idx, _Planned(self._output_rail(gate.user).whole_check(reply), (idx,)), None

    def _reply(self, response: ModelResponse, idx: int, plan: _Planned | None, verdict: Verdict | None) -> ModelResponse:
        if idx < 0 or verdict is None:
            return response
        result = list(response.result)
        reply = result[idx]
        if verdict.safe:
            result[idx] = _mark(reply, "output", verdict)
            return ModelResponse(result=result, structured_response=response.structured_response)
        if self.exit_behavior == "error":
            raise violation(plan.check, verdict)  # type: ignore[union-attr]
        # the reply is overwritten (same id, no tool calls): its text never reaches the history
        text = format_violation(self.violation_message, verdict)
        return ModelResponse(result=[_mark(AIMessage(content=text, id=reply.id), "output", verdict)])

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        if not self.check_output:
            return handler(request)
        gate = self._gate(request, is_async=False)
        with gate_scope(gate):
            response = handler(request.override(model=guarded_model(request.model)))
        idx, plan, verdict = self._reply_plan(gate, response)
        if verdict is None and plan is not None:
            verdict = self._judge_sync([plan])[0]
        return self._reply(response, idx, plan, verdict)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        if not self.check_output:
            return await handler(request)
        gate = self._gate(request, is_async=True)
        with gate_scope(gate):
            response = await handler(request.override(model=guarded_model(request.model)))
        idx, plan, verdict = self._reply_plan(gate, response)
        if verdict is None and plan is not None:
            verdict = (await self._judge_async([plan]))[0]
        return self._reply(response, idx, plan, verdict)

    # ----------------------------------------------------------------- tool results, before the tools node hands them on

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        result = handler(request)
        plan = self._plan_tool(result) if isinstance(result, ToolMessage) else None
        return result if plan is None else self._tool_result(result, plan, self._judge_sync([plan])[0])  # type: ignore[arg-type]

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]
    ) -> ToolMessage | Command[Any]:
        result = await handler(request)
        plan = self._plan_tool(result) if isinstance(result, ToolMessage) else None
        if plan is None:
            return result
        return self._tool_result(result, plan, (await self._judge_async([plan]))[0])  # type: ignore[arg-type]

    # ----------------------------------------------------------------- hooks

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_before(messages)
        return self._decide(messages, plans, self._judge_sync(plans) if plans else [])

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_before(messages)
        return self._decide(messages, plans, await self._judge_async(plans) if plans else [])

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_after(messages)
        return self._decide(messages, plans, self._judge_sync(plans)) if plans else None

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_after(messages)
        return self._decide(messages, plans, await self._judge_async(plans)) if plans else None


_SAFE = Verdict(safe=True)
