"""Compare two runs: what differs in how they were made, the metric changes with a paired test
each, and the items whose decision flipped.

Both runs are scored on the items they share, so a run that judged more items than the other
does not move the numbers by itself. Each delta carries a paired bootstrap 95% interval and
p-value (the same resampled items for both runs; AUPRC, ROC-AUC and ECE when both runs have
scores); accuracy also gets the exact McNemar test on the items exactly one run got right.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import metrics as m
from .predictions import Prediction, read_predictions
from .summary import group_metrics, scores_of

__all__ = ["Comparison", "compare_predictions", "compare_runs"]

_METRICS = ("precision", "recall", "f1", "fpr", "accuracy", "auprc", "roc_auc", "ece", "n_errors")
#: run.json fields worth naming when two runs differ in them
_CONFIG_KEYS = ("mode", "model", "backend", "base_url", "policy", "threshold", "on_error", "seed", "limit", "sets",
                "batch_size", "explain")


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
    #: scope -> metric -> {"lo", "hi", "p"} of (B - A), paired bootstrap; "mcnemar_p" per scope
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: setting -> (A, B) for the run.json settings that differ
    config: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_markdown(self, *, max_items: int = 50) -> str:
        out = [f"# {self.name_b} against {self.name_a}", ""]
        if self.config:
            out += ["## The runs differ in how they were made", "", f"| setting | {self.name_a} | {self.name_b} |",
                    "|---|---|---|"]
            out += [f"| {k} | {_cell(a)} | {_cell(b)} |" for k, (a, b) in self.config.items()]
            out += ["", "Differences in the metrics below may come from these as much as from the change you made.", ""]
        out += [f"{self.common} items in both runs ({self.only_a} only in {self.name_a}, {self.only_b} only in "
                f"{self.name_b}); metrics on the shared items. 95% interval and p: paired bootstrap of the change "
                "(1000 rounds, seed 0); McNemar: exact test on the items exactly one run got right.", "",
                "| scope | metric | " + f"{self.name_a} | {self.name_b} | change | 95% interval | p |",
                "|---|---|---|---|---|---|---|"]
        for scope, values in self.metrics.items():
            tests = self.tests.get(scope, {})
            for metric, (a, b) in values.items():
                change = f"{b - a:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
                if scope != "all" and change in ("", "+0.000") and metric != "f1":
                    continue
                test = tests.get(metric)
                interval = f"[{test['lo']:+.3f}, {test['hi']:+.3f}]" if test else ""
                p = f"{test['p']:.3f}" if test else ""
                if metric == "accuracy" and tests.get("mcnemar_p") is not None:
                    p += f" (McNemar {tests['mcnemar_p']:.3f})"
                out.append(f"| {scope} | {metric} | {_f(a)} | {_f(b)} | {change} | {interval} | {p} |")
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


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|")


def _said(p: Prediction) -> str:
    if p.error:
        return f"error ({p.error_kind})"
    label = "unsafe" if p.flagged else "safe"
    if p.flagged and p.predicted_categories:
        label += ": " + ", ".join(p.predicted_categories)
    return label


def _tests(pa: Sequence[Prediction], pb: Sequence[Prediction]) -> dict[str, Any]:
    y = [p.unsafe for p in pa]
    out: dict[str, Any] = dict(m.paired_bootstrap(y, [p.decision for p in pa], [p.decision for p in pb]))
    out["mcnemar_p"] = m.mcnemar_p([p.correct for p in pa], [p.correct for p in pb])
    sa, sb = scores_of(pa), scores_of(pb)
    if sa is not None and sb is not None:
        out.update(m.paired_bootstrap_scores(y, sa, sb))
    return out


def compare_predictions(a: Sequence[Prediction], b: Sequence[Prediction], *, name_a: str = "A", name_b: str = "B",
                        config_a: Mapping[str, Any] | None = None,
                        config_b: Mapping[str, Any] | None = None) -> Comparison:
    by_a = {p.id: p for p in a}
    by_b = {p.id: p for p in b}
    shared = [i for i in by_a if i in by_b]
    pa = [by_a[i] for i in shared]
    pb = [by_b[i] for i in shared]
    metrics: dict[str, dict[str, tuple[Any, Any]]] = {}
    tests: dict[str, dict[str, Any]] = {}
    scopes: dict[str, list[int]] = {"all": list(range(len(shared)))}
    for n, p in enumerate(pa):
        scopes.setdefault(p.dataset, []).append(n)
    for scope, idx in scopes.items():
        ra = group_metrics([pa[i] for i in idx])
        rb = group_metrics([pb[i] for i in idx])
        metrics[scope] = {k: (ra[k], rb[k]) for k in _METRICS}
        tests[scope] = _tests([pa[i] for i in idx], [pb[i] for i in idx])
    pairs = list(zip(pa, pb))
    return Comparison(
        name_a, name_b, len(shared), len(by_a) - len(shared), len(by_b) - len(shared), metrics,
        broken=[(x, y) for x, y in pairs if x.correct and not y.correct],
        fixed=[(x, y) for x, y in pairs if not x.correct and y.correct],
        tests=tests, config=config_differences(config_a or {}, config_b or {}),
    )


def _comparable(key: str, value: Any) -> Any:
    if key == "model" and isinstance(value, Mapping):
        return {k: value.get(k) for k in ("id", "revision", "source")}
    return value


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The settings two run.json files disagree on (old run.json files lack some: not shown)."""
    out = {}
    for key in _CONFIG_KEYS:
        if key in a or key in b:
            va, vb = _comparable(key, a.get(key)), _comparable(key, b.get(key))
            if va != vb:
                out[key] = (va, vb)
    return out


def _run_json(run: str | Path) -> dict[str, Any]:
    path = Path(run)
    path = path / "run.json" if path.is_dir() else path.with_name("run.json")
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def compare_runs(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Compare two run folders (or their ``predictions.jsonl`` files)."""
    a, b = read_predictions(run_a), read_predictions(run_b)
    for run, preds in ((run_a, a), (run_b, b)):
        if not preds:
            raise ConfigError(f"{run} holds no predictions.jsonl to compare")
    name_a, name_b = Path(run_a).name or str(run_a), Path(run_b).name or str(run_b)
    if name_a == name_b:
        name_a, name_b = str(run_a), str(run_b)
    return compare_predictions(a, b, name_a=name_a, name_b=name_b, config_a=_run_json(run_a),
                               config_b=_run_json(run_b))
