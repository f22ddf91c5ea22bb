"""What every LangChain component shares: the lazy judge, the check requests it builds (a core
:class:`~omniguard_plugins.doors.Ask` whose conversation converts inside the judge, so a
conversion failure follows ``on_error`` and is counted like any other), verdict events for
callbacks, and the one table from LangChain's ``exit_behavior`` onto the core's block actions.

Sync and async differ only in :func:`judge_and_record` / :func:`ajudge_and_record`, a few lines
each; the decisions live in the callers' shared code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.runnables import RunnableConfig

from omniguard_plugins import OmniGuard, Policy, Verdict
from omniguard_plugins.content import Conversation
from omniguard_plugins.doors import Action, Ask, Blocking, Stage, summarize
from omniguard_plugins.errors import ConfigError

__all__ = [
    "EXIT_ACTIONS",
    "VERDICT_EVENT",
    "AskSettings",
    "Check",
    "ExitBehavior",
    "Stage",
    "ajudge_and_record",
    "arecord",
    "arun_checks",
    "blocking",
    "event_data",
    "judge_and_record",
    "record",
    "resolve_judge",
    "run_checks",
]

log = logging.getLogger("omniguard.langchain")

ExitBehavior = Literal["error", "end", "replace"]

#: the name of the custom callback event carrying each verdict (``on_custom_event``)
VERDICT_EVENT = "omniguard_verdict"

#: LangChain's ``exit_behavior`` (the words of ``OpenAIModerationMiddleware``) on the core's actions:
#: "error" raises GuardViolation, "end" answers with the refusal instead, "replace" puts the
#: refusal where the blocked content was and goes on
EXIT_ACTIONS: Mapping[str, Action] = {"error": "raise", "end": "refuse", "replace": "replace"}


def blocking(exit_behavior: str, violation_message: str | None) -> Blocking:
    """The core's :class:`~omniguard_plugins.doors.Blocking` for a component's settings."""
    action = EXIT_ACTIONS.get(exit_behavior)
    if action is None:
        raise ConfigError(f"exit_behavior must be one of {', '.join(map(repr, EXIT_ACTIONS))}, got {exit_behavior!r}")
    return Blocking(action, None if action == "raise" else violation_message)


def resolve_judge(judge: OmniGuard | None) -> OmniGuard:
    """The judge a component was given, else the process-wide shared one (loaded on first check)."""
    return judge if judge is not None else OmniGuard.shared()


@dataclass(frozen=True)
class AskSettings:
    """What a component asks every check with: its policy, mode, and whether its refusal shows
    a critique (then unsafe verdicts are explained)."""

    policy: Policy | Mapping[str, Any] | None = None
    mode: Literal["verdict", "critique", "score"] | None = None
    block: Blocking = Blocking()

    def check(self, stage: Stage, content: Any, build: Callable[[], Conversation]) -> Check:
        ask = Ask(conversation=build, stage=stage, policy=self.policy, mode=self.mode, explain=self.block.explain)
        return Check(ask, content)


@dataclass(frozen=True)
class Check:
    """One check to run: the core :class:`Ask` and the LangChain value it judges (carried to
    the decision and to :class:`~omniguard_plugins.errors.GuardViolation`)."""

    ask: Ask
    content: Any

    @property
    def stage(self) -> Stage:
        return self.ask.stage or "input"


def run_checks(judge: OmniGuard, checks: Sequence[Check]) -> list[Verdict]:
    """Judge every check in one ``check_many`` (one batch for the model)."""
    return judge.check_many([c.ask for c in checks]) if checks else []


async def arun_checks(judge: OmniGuard, checks: Sequence[Check]) -> list[Verdict]:
    return await judge.acheck_many([c.ask for c in checks]) if checks else []


def judge_and_record(
    judge: OmniGuard, checks: Sequence[Check], configs: Sequence[RunnableConfig | None]
) -> list[Verdict]:
    """Run the checks, then tell callbacks about each verdict: what every component does."""
    verdicts = run_checks(judge, checks)
    for check, verdict, config in zip(checks, verdicts, configs):
        record(check.stage, verdict, config)
    return verdicts


async def ajudge_and_record(
    judge: OmniGuard, checks: Sequence[Check], configs: Sequence[RunnableConfig | None]
) -> list[Verdict]:
    verdicts = await arun_checks(judge, checks)
    for check, verdict, config in zip(checks, verdicts, configs):
        await arecord(check.stage, verdict, config)
    return verdicts


def event_data(stage: Stage, verdict: Verdict) -> dict[str, Any]:
    """A verdict event's payload: the core's summary, plus the stream rail's ``details`` (which
    window of a streamed answer it judged)."""
    return {**summarize(verdict, stage).to_json(), "details": dict(verdict.details)}


def record(stage: Stage, verdict: Verdict, config: RunnableConfig | None = None) -> None:
    """Tell callbacks (LangSmith, ``astream_events``) about a verdict; never breaks the chain."""
    try:
        dispatch_custom_event(VERDICT_EVENT, event_data(stage, verdict), config=config)
    except RuntimeError:
        pass  # not inside a run: nobody to tell


async def arecord(stage: Stage, verdict: Verdict, config: RunnableConfig | None = None) -> None:
    try:
        await adispatch_custom_event(VERDICT_EVENT, event_data(stage, verdict), config=config)
    except RuntimeError:
        pass
