"""OmniGuardMiddleware: OmniGuard rails for agents built with ``langchain.agents.create_agent``.

Shaped like LangChain's ``OpenAIModerationMiddleware`` (same options, same exits), with the
whole multimodal message judged (text, images, audio, video in one check) and tool results
that carry media judged too. Each hook plans its checks, judges them in one ``check_many``
(so a turn's tool results and user message share a model batch) and decides; only the judge
call differs between the sync and the async hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from langchain.agents.middleware.types import AgentMiddleware, AgentState, hook_config
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from omniguard_plugins import OmniGuard, Policy, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.errors import ConfigError

from ._convert import has_content, parts_of
from ._judging import (
    Check,
    ExitBehavior,
    Stage,
    arecord,
    arun_checks,
    format_violation,
    prepare,
    record,
    resolve_judge,
    run_checks,
    violation,
)

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

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


class OmniGuardMiddleware(AgentMiddleware[AgentState[Any], Any]):
    """Judge an agent's user input, tool results and model output with OmniGuard.

    ``before_model`` judges new user messages (``check_input``) and the tool results since the
    model last spoke (``check_tool_results``, media included); ``after_model`` judges the
    model's reply in the context of the user's message (``check_output``). On an unsafe verdict
    ``exit_behavior`` decides: ``"end"`` (default) ends the run with ``violation_message`` as
    the final AI message (an unsafe reply is replaced, not kept in the history); ``"error"``
    raises :class:`~omniguard_plugins.errors.GuardViolation`; ``"replace"`` swaps the offending
    message's content for ``violation_message`` and lets the agent go on.
    ``violation_message`` may use ``{categories}`` and ``{critique}``.
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
        self._judge: OmniGuard | None = None

    @property
    def omniguard(self) -> OmniGuard:
        if self._judge is None:
            self._judge = resolve_judge(self.judge)
        return self._judge

    # ----------------------------------------------------------------- plans

    def _plan(self, stage: Stage, content: Any, indices: tuple[int, ...], conversation: Any) -> _Planned:
        direction = "output" if stage == "output" else "input"
        check = prepare(self.omniguard, stage, content, conversation, direction=direction,
                        policy=self.policy, mode=self.mode,
                        template=self.violation_message if self.exit_behavior != "error" else None)
        return _Planned(check, indices)

    def _plan_before(self, messages: Sequence[BaseMessage]) -> list[_Planned]:
        last_ai = _last_index(messages, AIMessage)
        since = 0 if last_ai is None else last_ai + 1  # what arrived since the model last spoke
        plans: list[_Planned] = []
        if self.check_tool_results:
            for i in range(since, len(messages)):
                msg = messages[i]
                if isinstance(msg, ToolMessage) and has_content(msg):
                    plans.append(self._plan("tool", msg, (i,), lambda m=msg: Conversation((Turn("user", parts_of(m)),))))
        if self.check_input:
            users = tuple(i for i in range(since, len(messages)) if isinstance(messages[i], HumanMessage))
            if users:
                def build() -> Conversation:
                    return Conversation((Turn("user", tuple(p for i in users for p in parts_of(messages[i]))),))

                plans.append(self._plan("input", messages[users[-1]], users, build))
        return plans

    def _plan_after(self, messages: Sequence[BaseMessage]) -> list[_Planned]:
        idx = _last_index(messages, AIMessage)
        if not self.check_output or idx is None or not has_content(messages[idx]):
            return []
        reply = messages[idx]
        asked = _last_index(messages, HumanMessage, before=idx)

        def build() -> Conversation:
            context = (Turn("user", parts_of(messages[asked])),) if asked is not None else ()
            return Conversation((*context, Turn("assistant", parts_of(reply))))

        return [self._plan("output", reply, (idx,), build)]

    # ----------------------------------------------------------------- the decision

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
            if self.exit_behavior == "end":
                # an unsafe reply is overwritten (same id), not left in the history
                same_id = messages[plan.indices[0]].id if plan.check.stage == "output" else None
                return {"jump_to": "end", "messages": [AIMessage(content=text, id=same_id)]}
            replaced.extend(messages[i].model_copy(update={"content": text}) for i in plan.indices)
        return {"messages": replaced} if replaced else None

    def _judge_sync(self, plans: list[_Planned]) -> list[Verdict]:
        verdicts = run_checks(self.omniguard, [p.check for p in plans])
        for plan, verdict in zip(plans, verdicts):
            record(plan.check.stage, verdict)
        return verdicts

    async def _judge_async(self, plans: list[_Planned]) -> list[Verdict]:
        verdicts = await arun_checks(self.omniguard, [p.check for p in plans])
        for plan, verdict in zip(plans, verdicts):
            await arecord(plan.check.stage, verdict)
        return verdicts

    # ----------------------------------------------------------------- hooks

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_before(messages)
        return self._decide(messages, plans, self._judge_sync(plans)) if plans else None

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:  # type: ignore[override]
        messages = list(state.get("messages", []))
        plans = self._plan_before(messages)
        return self._decide(messages, plans, await self._judge_async(plans)) if plans else None

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
