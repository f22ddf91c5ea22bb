"""``omniguard policy test``: a custom policy on a golden set, against the default policy.

The same items are judged twice with one judge (the policy travels with each check), once under
the custom policy and once under the default; each run is a resumable run folder, and the
comparison lists the items whose decision flipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..judge import OmniGuard
from ..policy import Policy
from .compare import Comparison, compare_predictions
from .items import EvalItem
from .runner import evaluate
from .summary import EvalReport

__all__ = ["PolicyTest", "policy_test"]


@dataclass
class PolicyTest:
    custom: EvalReport
    default: EvalReport | None
    comparison: Comparison | None


def policy_test(
    judge: OmniGuard,
    policy: Policy,
    items: Sequence[EvalItem],
    *,
    out_dir: str | Path | None = None,
    baseline: bool = True,
    mode: str | None = None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    seed: int | None = None,
    limit: int | None = None,
) -> PolicyTest:
    """Evaluate ``items`` under ``policy`` (and, with ``baseline``, under the default policy)."""
    out = Path(out_dir) if out_dir is not None else None
    custom = evaluate(judge, items, out_dir=out / "custom" if out else None, mode=mode, policy=policy,
                      batch_size=batch_size, progress=progress, seed=seed, limit=limit)
    if not baseline:
        return PolicyTest(custom, None, None)
    default = evaluate(judge, items, out_dir=out / "default" if out else None, mode=mode, policy=Policy(),
                       batch_size=batch_size, progress=progress, seed=seed, limit=limit)
    comparison = compare_predictions(default.predictions, custom.predictions, name_a="default policy",
                                     name_b="custom policy")
    return PolicyTest(custom, default, comparison)
