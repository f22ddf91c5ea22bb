"""Small pieces every LlamaIndex rail shares: the judge, the refusal, verdict summaries. (Content
that fails to convert is handed to the judge, which applies ``on_error`` to it.)"""

from __future__ import annotations

from typing import Any, Literal

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.errors import GuardViolation
from omniguard_plugins.rails import DEFAULT_REFUSAL as CORE_REFUSAL

__all__ = [
    "DEFAULT_REFUSAL",
    "OnBlock",
    "resolve_judge",
    "verdict_info",
    "violation",
]

#: what a guarded engine answers instead of blocked content (the core's one default)
DEFAULT_REFUSAL = CORE_REFUSAL

#: how a guarded engine blocks: answer with the refusal message, or raise GuardViolation
OnBlock = Literal["refuse", "raise"]


def resolve_judge(judge: OmniGuard | None) -> OmniGuard:
    """The judge handed in, else the process-wide shared one (resolved on first use)."""
    return judge if judge is not None else OmniGuard.shared()


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
