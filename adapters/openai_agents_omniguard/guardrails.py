"""OmniGuard as OpenAI Agents SDK guardrails: input, output, tool input and tool output.

    from agents import Agent, function_tool
    from openai_agents_omniguard import omniguard_input, omniguard_output, omniguard_tool_input, omniguard_tool_output

    @function_tool(tool_input_guardrails=[omniguard_tool_input], tool_output_guardrails=[omniguard_tool_output])
    def post_image(caption: str, image: str) -> str: ...

    agent = Agent(name="poster", tools=[post_image],
                  input_guardrails=[omniguard_input], output_guardrails=[omniguard_output])

The four ready guardrails use the shared judge (``OmniGuard.shared()``, resolved on first use);
the ``omniguard_*_guardrail(judge=..., policy=..., mode=...)`` factories build them with other
settings. Every guardrail puts the verdict summary (``summarize(verdict, stage).to_json()``) in
its ``output_info``. What is judged, at which stage:

| guardrail   | judged                                                                      | stage  |
|-------------|-----------------------------------------------------------------------------|--------|
| input       | the run's input messages, with ``input_image``/``input_file``/``input_audio`` | input  |
| output      | the agent's final output (text, or a structured output as JSON)             | output |
| tool input  | the call as ``render_tool_call`` renders it (media in arguments as media)    | output |
| tool output | the tool's result: text, ``ToolOutputImage``, ``ToolOutputFileContent``      | tool   |

A block (``on_unsafe``): ``"trip"`` (the default) triggers the SDK's tripwire, so the run stops
with ``InputGuardrailTripwireTriggered`` / ``OutputGuardrailTripwireTriggered`` /
``ToolInputGuardrailTripwireTriggered`` / ``ToolOutputGuardrailTripwireTriggered``; tool
guardrails also take ``"reject"`` (``doors.Action`` "refuse"): the call is not run (or its result
not shown) and the model reads the refusal instead. A judge error is a blocking verdict under the
judge's ``on_error`` (``"block"`` by default), so it trips too: the guardrails fail closed.

The input guardrail runs *before* the agent (``run_in_parallel=False``), so an unsafe input never
reaches the model; pass ``run_in_parallel=True`` for the SDK's concurrent mode (lower latency, but
the model call may already have started when the tripwire fires).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrail,
    OutputGuardrail,
    RunContextWrapper,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.doors import Action, Ask, Blocking, Decision, Stage, render_tool_call, summarize
from omniguard_plugins.errors import ConfigError, ContentError
from omniguard_plugins.policy import Policy
from omniguard_plugins.verdict import Mode

from ._convert import input_conversation, output_parts, tool_output_parts

__all__ = [
    "ON_UNSAFE",
    "OnUnsafe",
    "omniguard_input",
    "omniguard_input_guardrail",
    "omniguard_output",
    "omniguard_output_guardrail",
    "omniguard_tool_input",
    "omniguard_tool_input_guardrail",
    "omniguard_tool_output",
    "omniguard_tool_output_guardrail",
]

#: what a guardrail does with a block: the SDK's tripwire (its exception ends the run), or, for a
#: tool, reject the call or its result with the refusal as the message the model reads
OnUnsafe = Literal["trip", "reject"]
#: the vocabulary -> ``doors.Action`` (the SDK raises its own exception for a tripwire)
ON_UNSAFE: Mapping[OnUnsafe, Action] = {"trip": "raise", "reject": "refuse"}


class _Rail:
    """One guardrail's settings, its check and its one decision site."""

    def __init__(self, judge: OmniGuard | None, stage: Stage, policy: Policy | Mapping[str, Any] | None,
                 mode: Mode | None, on_unsafe: OnUnsafe, refusal_message: str | None) -> None:
        if on_unsafe not in ON_UNSAFE:
            raise ConfigError(f"on_unsafe must be one of {', '.join(map(repr, ON_UNSAFE))}, got {on_unsafe!r}")
        if mode is not None and mode not in get_args(Mode):
            raise ConfigError(f"mode must be one of {', '.join(get_args(Mode))}, got {mode!r}")
        self._given = judge
        self._judge = judge
        self.stage = stage
        self.policy = policy
        self.mode = mode
        self.on_unsafe = on_unsafe
        # the refusal text for "reject"; a tripwire is raised by the SDK, not by Blocking.decide
        self.blocking = Blocking("refuse", refusal_message)

    @property
    def judge(self) -> OmniGuard:
        """The judge handed in, else the shared one, resolved on first use and then kept."""
        if self._judge is None:
            self._judge = OmniGuard.shared()
        return self._judge

    async def judge_and_decide(self, build: Callable[[], Conversation]) -> tuple[Decision | None, dict[str, Any]]:
        """Judge the content and decide (None: nothing to judge, e.g. an empty tool result); the
        verdict summary goes into ``output_info``. Content that does not convert is handed to the
        judge as the builder, which raises inside the check, so ``on_error`` decides it."""
        try:
            if not any(turn.parts for turn in build().turns):
                return None, {"judged": False, "reason": "nothing to judge"}
        except ContentError:
            pass
        ask = Ask(conversation=build, stage=self.stage, policy=self.policy, mode=self.mode,
                  explain=self.blocking.explain)
        verdict: Verdict = await self.judge.acheck(ask)
        return self.blocking.decide(verdict, self.stage), summarize(verdict, self.stage).to_json()

    def tripped(self, decision: Decision | None) -> bool:
        return decision is not None and decision.blocked

    def tool_output(self, decision: Decision | None, info: dict[str, Any]) -> ToolGuardrailFunctionOutput:
        """The one decision site of the tool guardrails."""
        if not self.tripped(decision):
            return ToolGuardrailFunctionOutput.allow(info)
        if self.on_unsafe == "reject":
            return ToolGuardrailFunctionOutput.reject_content(decision.text or "", info)  # type: ignore[union-attr]
        return ToolGuardrailFunctionOutput.raise_exception(info)


def omniguard_input_guardrail(judge: OmniGuard | None = None, *, policy: Policy | Mapping[str, Any] | None = None,
                              mode: Mode | None = None, run_in_parallel: bool = False,
                              name: str = "omniguard_input") -> InputGuardrail[Any]:
    """Judges the run's input (stage ``input``); trips on unsafe."""
    rail = _Rail(judge, "input", policy, mode, "trip", None)

    async def check(context: RunContextWrapper[Any], agent: Agent[Any], items: Any) -> GuardrailFunctionOutput:
        decision, info = await rail.judge_and_decide(lambda: input_conversation(items))
        return GuardrailFunctionOutput(output_info=info, tripwire_triggered=rail.tripped(decision))

    return InputGuardrail(guardrail_function=check, name=name, run_in_parallel=run_in_parallel)


def omniguard_output_guardrail(judge: OmniGuard | None = None, *, policy: Policy | Mapping[str, Any] | None = None,
                               mode: Mode | None = None, name: str = "omniguard_output") -> OutputGuardrail[Any]:
    """Judges the agent's final output (stage ``output``); trips on unsafe."""
    rail = _Rail(judge, "output", policy, mode, "trip", None)

    async def check(context: RunContextWrapper[Any], agent: Agent[Any], output: Any) -> GuardrailFunctionOutput:
        decision, info = await rail.judge_and_decide(lambda: Conversation((Turn("assistant", output_parts(output)),)))
        return GuardrailFunctionOutput(output_info=info, tripwire_triggered=rail.tripped(decision))

    return OutputGuardrail(guardrail_function=check, name=name)


def omniguard_tool_input_guardrail(judge: OmniGuard | None = None, *,
                                   policy: Policy | Mapping[str, Any] | None = None, mode: Mode | None = None,
                                   on_unsafe: OnUnsafe = "trip", refusal_message: str | None = None,
                                   name: str = "omniguard_tool_input") -> ToolInputGuardrail[Any]:
    """Judges a tool call before the tool runs (stage ``output``: the model's action)."""
    rail = _Rail(judge, "output", policy, mode, on_unsafe, refusal_message)

    async def check(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        call = data.context

        def build() -> Conversation:
            return Conversation((Turn("assistant", render_tool_call(call.tool_name, call.tool_arguments)),))

        return rail.tool_output(*await rail.judge_and_decide(build))

    return ToolInputGuardrail(guardrail_function=check, name=name)


def omniguard_tool_output_guardrail(judge: OmniGuard | None = None, *,
                                    policy: Policy | Mapping[str, Any] | None = None, mode: Mode | None = None,
                                    on_unsafe: OnUnsafe = "trip", refusal_message: str | None = None,
                                    name: str = "omniguard_tool_output") -> ToolOutputGuardrail[Any]:
    """Judges what a tool returned before the model reads it (stage ``tool``)."""
    rail = _Rail(judge, "tool", policy, mode, on_unsafe, refusal_message)

    async def check(data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        def build() -> Conversation:
            return Conversation((Turn("user", tool_output_parts(data.output)),))

        return rail.tool_output(*await rail.judge_and_decide(build))

    return ToolOutputGuardrail(guardrail_function=check, name=name)


#: the ready guardrails, on the shared judge
omniguard_input = omniguard_input_guardrail()
omniguard_output = omniguard_output_guardrail()
omniguard_tool_input = omniguard_tool_input_guardrail()
omniguard_tool_output = omniguard_tool_output_guardrail()
