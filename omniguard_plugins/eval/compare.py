"""Compare two runs: the metric changes and the items whose decision flipped.

Both runs are scored on the items they share, so a run that judged more items than the other
does not move the numbers by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .predictions import Prediction, read_predictions
from .summary import group_metrics

__all__ = ["Comparison", "compare_predictions", "compare_runs"]

_METRICS = ("precision", "recall", "f1", "accuracy", "auprc", "roc_auc", "ece", "n_errors")


@dataclass
class Comparison:
    name_a: str
    name_b: str
    common: int
    only_a: int
    only_b: int
    #: scope ("all" or a set) -> metric -> (a, b)
    metrics: dict[str, dict[str, tuple[Any, Any]]]
    #: items right in A and wrong in B, and the other way round
    broken: list[tuple[Prediction, Prediction]]
    fixed: list[tuple[Prediction, Prediction]]

    def to_markdown(self, *, max_items: int = 50) -> str:
        out = [f"# {self.name_b} against {self.name_a}", "",
               f"{self.common} items in both runs ({self.only_a} only in {self.name_a}, {self.only_b} only in "
               f"{self.name_b}); metrics on the shared items.", "",
               "| scope | metric | " + f"{self.name_a} | {self.name_b} | change |", "|---|---|---|---|---|"]
        for scope, values in self.metrics.items():
            for metric, (a, b) in values.items():
                change = f"{b - a:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
                if scope != "all" and change in ("", "+0.000") and metric != "f1":
                    continue
                out.append(f"| {scope} | {metric} | {_f(a)} | {_f(b)} | {change} |")
        for title, pairs in ((f"Right in {self.name_a}, wrong in {self.name_b}", self.broken),
                             (f"Wrong in {self.name_a}, right in {self.name_b}", self.fixed)):
            out += ["", f"## {title} ({len(pairs)})", ""]
            if pairs:
                out += ["| item | label | " + f"{self.name_a} | {self.name_b} | text |", "|---|---|---|---|---|"]
            for a, b in pairs[:max_items]:
                text = a.text[:90].replace("|", "\\|").replace("\n", " ")
                out.append(f"| {a.id} | {'unsafe' if a.unsafe else 'safe'} | {_said(a)} | {_said(b)} | {text} |")
            if len(pairs) > max_items:
                out.append(f"\n... and {len(pairs) - max_items} more")
        return "\n".join(out) + "\n"


def _f(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _said(p: Prediction) -> str:
    if p.error:
        return f"error ({p.error_kind})"
    label = "unsafe" if p.flagged else "safe"
    if p.flagged and p.predicted_categories:
        label += ": " + ", ".join(p.predicted_categories)
    return label


def compare_predictions(a: Sequence[Prediction], b: Sequence[Prediction], *, name_a: str = "A",
                        name_b: str = "B") -> Comparison:
    by_a = {p.id: p for p in a}
    by_b = {p.id: p for p in b}
    shared = [i for i in by_a if i in by_b]
    pa = [by_a[i] for i in shared]
    pb = [by_b[i] for i in shared]
    metrics: dict[str, dict[str, tuple[Any, Any]]] = {}
    scopes: dict[str, list[int]] = {"all": list(range(len(shared)))}
    for n, p in enumerate(pa):
        scopes.setdefault(p.dataset, []).append(n)
    for scope, idx in scopes.items():
        ra = group_metrics([pa[i] for i in idx])
        rb = group_metrics([pb[i] for i in idx])
        metrics[scope] = {k: (ra[k], rb[k]) for k in _METRICS}
    pairs = list(zip(pa, pb))
    return Comparison(
        name_a, name_b, len(shared), len(by_a) - len(shared), len(by_b) - len(shared), metrics,
        broken=[(x, y) for x, y in pairs if x.correct and not y.correct],
        fixed=[(x, y) for x, y in pairs if not x.correct and y.correct],
    )


def compare_runs(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Compare two run folders (or their ``predictions.jsonl`` files)."""
    a, b = read_predictions(run_a), read_predictions(run_b)
    for run, preds in ((run_a, a), (run_b, b)):
        if not preds:
            raise ConfigError(f"{run} holds no predictions.jsonl to compare")
    name_a, name_b = Path(run_a).name or str(run_a), Path(run_b).name or str(run_b)
    if name_a == name_b:
        name_a, name_b = str(run_a), str(run_b)
    return compare_predictions(a, b, name_a=name_a, name_b=name_b)
