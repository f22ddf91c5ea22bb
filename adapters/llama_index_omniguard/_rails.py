"""Small pieces every LlamaIndex rail shares: the judge, failed conversions, verdict summaries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.errors import ContentError, GuardViolation

__all__ = [
    "DEFAULT_REFUSAL",
    "OnBlock",
    "conversion_failure",
    "guarded",
    "resolve_judge",
    "verdict_info",
    "violation",
]

#: what a guarded engine answers instead of blocked content
DEFAULT_REFUSAL = "I can't help with that."

#: how a guarded engine blocks: answer with the refusal message, or raise GuardViolation
OnBlock = Literal["refuse", "raise"]


def resolve_judge(judge: OmniGuard | None) -> OmniGuard:
    """The judge handed in, else the process-wide shared one (resolved on first use)."""
    return judge if judge is not None else OmniGuard.shared()


def guarded(judge: OmniGuard, convert: Callable[[], Any]) -> tuple[Any, Verdict | None]:
    """Run a conversion; a ContentError becomes a failed verdict the rail acts on, as the
    judge would treat unreadable content (block by default, raise under on_error="raise")."""
    try:
        return convert(), None
    except ContentError as exc:
        return None, conversion_failure(judge, exc)


def conversion_failure(judge: OmniGuard, exc: ContentError) -> Verdict:
    if judge.config.on_error == "raise":
        raise exc
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Verdict(safe=judge.config.on_error == "allow", error=f"{exc.kind}: {reason}",
                   details={"error_kind": exc.kind, "reason": reason})


def verdict_info(verdict: Verdict, **extra: Any) -> dict[str, Any]:
    """A small, JSON-friendly summary of a verdict for node metadata and response metadata."""
    info: dict[str, Any] = {
        "label": verdict.label,
        "safe": verdict.safe,
        "categories": list(verdict.category_codes),
    }
    if verdict.error:
        info["error"] = verdict.error
    if verdict.critique:
        info["critique"] = verdict.critique
    info.update(extra)
    return info


def violation(stage: str, verdict: Verdict, content: Any, what: str) -> GuardViolation:
    return GuardViolation(f"OmniGuard blocked the {what}: {verdict.summary()}", stage=stage, verdict=verdict,
                          content=content)
