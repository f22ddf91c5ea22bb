"""What every LangChain component shares: the lazy judge, checks that survive bad content,
verdict events for callbacks, and the violation message.

Sync and async differ only in :func:`run_checks` / :func:`arun_checks` and
:func:`record` / :func:`arecord`, a few lines each; the decisions live in the callers' shared
code paths.
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
from omniguard_plugins.errors import ContentError, GuardViolation

__all__ = [
    "DEFAULT_VIOLATION_MESSAGE",
    "VERDICT_EVENT",
    "Check",
    "ExitBehavior",
    "Stage",
    "arecord",
    "arun_checks",
    "format_violation",
    "prepare",
    "record",
    "resolve_judge",
    "run_checks",
    "violation",
]

log = logging.getLogger("omniguard.langchain")

Stage = Literal["input", "output", "tool"]
ExitBehavior = Literal["error", "end", "replace"]

#: the name of the custom callback event carrying each verdict (``on_custom_event``)
VERDICT_EVENT = "omniguard_verdict"

DEFAULT_VIOLATION_MESSAGE = "I can't help with that: it was flagged as unsafe ({categories})."


def resolve_judge(judge: OmniGuard | None) -> OmniGuard:
    """The judge a component was given, else the process-wide shared one (loaded on first check)."""
    return judge if judge is not None else OmniGuard.shared()


@dataclass(frozen=True)
class Check:
    """One check to run, or (``verdict`` set) one already decided because the content could not
    be converted. ``stage`` and ``content`` travel with it to the decision and the event."""

    stage: Stage
    content: Any
    kwargs: Mapping[str, Any] | None = None
    verdict: Verdict | None = None


def prepare(
    judge: OmniGuard,
    stage: Stage,
    content: Any,
    build: Callable[[], Conversation],
    *,
    direction: Literal["input", "output"],
    policy: Policy | Mapping[str, Any] | None = None,
    mode: str | None = None,
    template: str | None = None,
) -> Check:
    """Build the check for ``content``; a conversion failure becomes a failed verdict that
    follows the judge's ``on_error`` (block by default), exactly as a media failure would.
    A violation ``template`` that shows ``{critique}`` asks the judge to explain unsafe verdicts."""
    try:
        conversation = build()
    except ContentError as exc:
        if judge.config.on_error == "raise":
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("omniguard: cannot judge %s content (%s)", stage, reason)
        failed = Verdict(
            safe=judge.config.on_error == "allow", error=f"{exc.kind}: {reason}", direction=direction,
            details={"error_kind": exc.kind, "reason": reason},
        )
        return Check(stage, content, verdict=failed)
    kwargs: dict[str, Any] = {"conversation": conversation, "direction": direction}
    if policy is not None:
        kwargs["policy"] = policy
    if mode is not None:
        kwargs["mode"] = mode
    if template and "{critique}" in template:
        kwargs["explain_unsafe"] = True
    return Check(stage, content, kwargs=kwargs)


def _merge(checks: Sequence[Check], judged: list[Verdict]) -> list[Verdict]:
    it = iter(judged)
    return [c.verdict if c.verdict is not None else next(it) for c in checks]


def run_checks(judge: OmniGuard, checks: Sequence[Check]) -> list[Verdict]:
    """Judge every pending check in one ``check_many`` (one batch for the model)."""
    todo = [c.kwargs for c in checks if c.verdict is None]
    return _merge(checks, judge.check_many(todo) if todo else [])


async def arun_checks(judge: OmniGuard, checks: Sequence[Check]) -> list[Verdict]:
    todo = [c.kwargs for c in checks if c.verdict is None]
    return _merge(checks, await judge.acheck_many(todo) if todo else [])


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


class _Keep(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def format_violation(template: str | None, verdict: Verdict) -> str:
    """The user-facing refusal: ``{categories}`` and ``{critique}`` filled from the verdict."""
    if verdict.categories:
        categories = ", ".join(verdict.category_names)
    elif verdict.error:
        categories = "the safety check could not be completed"
    else:
        categories = "the safety policy"
    values = _Keep(categories=categories, critique=verdict.critique or "")
    try:
        return (template or DEFAULT_VIOLATION_MESSAGE).format_map(values).strip()
    except (ValueError, IndexError, AttributeError):
        return template or DEFAULT_VIOLATION_MESSAGE


def violation(check: Check, verdict: Verdict) -> GuardViolation:
    """The exception for ``exit_behavior="error"``: one line saying where and why."""
    return GuardViolation(
        f"OmniGuard blocked the {check.stage}: {verdict.summary()}",
        stage=check.stage,
        verdict=verdict,
        content=check.content,
    )
