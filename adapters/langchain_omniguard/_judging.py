"""What every LangChain component shares: the lazy judge, checks whose content converts inside
the judge (so a conversion failure follows ``on_error`` and is counted like any other), verdict
events for callbacks, and the violation message.

Sync and async differ only in :func:`judge_and_record` / :func:`ajudge_and_record` (and the
pieces they are made of), a few lines each; the decisions live in the callers' shared code.
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
from omniguard_plugins.errors import GuardViolation
from omniguard_plugins.rails import DEFAULT_REFUSAL, Stage, refusal_text

__all__ = [
    "DEFAULT_VIOLATION_MESSAGE",
    "VERDICT_EVENT",
    "Check",
    "ExitBehavior",
    "Stage",
    "ajudge_and_record",
    "arecord",
    "arun_checks",
    "format_violation",
    "judge_and_record",
    "make_check",
    "record",
    "resolve_judge",
    "run_checks",
    "violation",
]

log = logging.getLogger("omniguard.langchain")

ExitBehavior = Literal["error", "end", "replace"]

#: the name of the custom callback event carrying each verdict (``on_custom_event``)
VERDICT_EVENT = "omniguard_verdict"

#: ``exit_behavior`` maps onto the core's table (:mod:`omniguard_plugins.rails`): "error" raises
#: GuardViolation, "end" answers with the refusal, "replace" puts it where the content was
DEFAULT_VIOLATION_MESSAGE = DEFAULT_REFUSAL


def resolve_judge(judge: OmniGuard | None) -> OmniGuard:
    """The judge a component was given, else the process-wide shared one (loaded on first check)."""
    return judge if judge is not None else OmniGuard.shared()


@dataclass(frozen=True)
class Check:
    """One check to run. ``stage`` and ``content`` travel with it to the decision and the
    event; ``item`` is what the judge gets, its conversation still to be built, so a
    conversion failure is decided by the judge's ``on_error`` like any other failure."""

    stage: Stage
    content: Any
    item: Mapping[str, Any]


def make_check(
    stage: Stage,
    content: Any,
    build: Callable[[], Conversation],
    *,
    direction: Literal["input", "output"],
    policy: Policy | Mapping[str, Any] | None = None,
    mode: str | None = None,
    template: str | None = None,
) -> Check:
    """The check for ``content``. A violation ``template`` that shows ``{critique}`` asks the
    judge to explain unsafe verdicts."""
    item: dict[str, Any] = {"conversation": build, "direction": direction}
    if policy is not None:
        item["policy"] = policy
    if mode is not None:
        item["mode"] = mode
    if template and "{critique}" in template:
        item["explain_unsafe"] = True
    return Check(stage, content, item)


def run_checks(judge: OmniGuard, checks: Sequence[Check]) -> list[Verdict]:
    """Judge every check in one ``check_many`` (one batch for the model)."""
    return judge.check_many([c.item for c in checks]) if checks else []


async def arun_checks(judge: OmniGuard, checks: Sequence[Check]) -> list[Verdict]:
    return await judge.acheck_many([c.item for c in checks]) if checks else []


def judge_and_record(judge: OmniGuard, checks: Sequence[Check], configs: Sequence[RunnableConfig | None]) -> list[Verdict]:
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
    data = verdict.to_dict()
    data["stage"] = stage
    return data


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


def format_violation(template: str | None, verdict: Verdict) -> str:
    """The user-facing refusal: ``{categories}`` and ``{critique}`` filled from the verdict."""
    return refusal_text(verdict, template)


def violation(check: Check, verdict: Verdict) -> GuardViolation:
    """The exception for ``exit_behavior="error"``: one line saying where and why."""
    return GuardViolation(
        f"OmniGuard blocked the {check.stage}: {verdict.summary()}",
        stage=check.stage,
        verdict=verdict,
        content=check.content,
    )
