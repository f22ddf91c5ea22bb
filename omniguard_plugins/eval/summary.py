"""From predictions to a report: metrics overall and per dataset, modality, direction, category.

A failed check (unparseable output, corrupt media, backend error) is a wrong answer and is
counted by kind; curves give it the worst score for its label. Score metrics (AUPRC, ROC-AUC,
ECE) are given where every counted item has a score: ``--mode score``, or any backend that
returns P(unsafe) with its verdicts (the in-process transformers backend does).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..policy import Policy
from . import metrics as m
from .predictions import Prediction

__all__ = ["EvalReport", "by_key", "group_metrics", "scores_of", "summarize"]

T = TypeVar("T")


def scores_of(preds: Sequence[Prediction]) -> list[float] | None:
    scores = [p.counted_score() for p in preds]
    return None if not scores or any(s is None for s in scores) else scores  # type: ignore[return-value]


def group_metrics(preds: Sequence[Prediction]) -> dict[str, Any]:
    """One row of a report table."""
    y = [p.unsafe for p in preds]
    c = m.counts(y, [p.decision for p in preds])
    scores = scores_of(preds)
    row: dict[str, Any] = {"n": len(preds), "n_unsafe": sum(y), "n_safe": len(y) - sum(y), **c.to_dict(),
                           "single_class": bool(preds) and (all(y) or not any(y)),
                           "errors": dict(Counter(p.error_kind for p in preds if p.error)),
                           "n_errors": sum(1 for p in preds if p.error),
                           "latency_p50_ms": m.percentile([p.latency_ms for p in preds], 50),
                           "latency_p95_ms": m.percentile([p.latency_ms for p in preds], 95),
                           "auprc": None, "roc_auc": None, "ece": None, "scored": scores is not None}
    if scores is not None:
        # one class only: AUPRC is trivially 1 (or undefined) and ROC-AUC undefined; ECE still says something
        row.update(auprc=None if row["single_class"] else m.average_precision(y, scores), roc_auc=m.roc_auc(y, scores),
                   ece=m.expected_calibration_error(y, scores))
    return row


def by_key(values: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = defaultdict(list)
    for v in values:
        out[key(v)].append(v)
    return dict(out)


def in_dev_split(item_id: str, fraction: float) -> bool:
    """A stable split by id hash, so the dev items stay the same across runs and resumes."""
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % 10_000 < fraction * 10_000


def category_label(token: str, policy: Policy) -> str:
    cat = policy.resolve(token)
    return str(cat) if cat is not None else f"{token} (not in the policy)"


@dataclass
class EvalReport:
    """Everything ``report.md``/``report.html`` show; ``to_dict`` is ``report.json``."""

    predictions: list[Prediction]
    overall: dict[str, Any]
    by_dataset: dict[str, dict[str, Any]]
    by_modality: dict[str, dict[str, Any]]
    by_direction: dict[str, dict[str, Any]]
    by_category: dict[str, dict[str, Any]]
    by_group: dict[str, dict[str, Any]]
    #: the paper's view: per modality, the mean of its datasets' F1
    modality_f1: dict[str, dict[str, Any]]
    threshold: dict[str, Any] | None = None
    run: dict[str, Any] = field(default_factory=dict)
    policy: list[str] = field(default_factory=list)
    no_categories: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "predictions"}


def _categories(preds: Sequence[Prediction], policy: Policy) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    tagged = [(p, category_label(t, policy)) for p in preds for t in p.categories]
    order = {str(c): n for n, c in enumerate(policy)}
    for label, group in sorted(by_key(tagged, lambda pair: pair[1]).items(), key=lambda kv: (order.get(kv[0], 99), kv[0])):
        items = [p for p, _ in group]
        cat = policy.resolve(label.split(":", 1)[0]) if "(not in" not in label else None
        named = [p for p in items if not p.error and p.predicted_categories]
        rows[label] = {"n": len(items), "n_unsafe": sum(p.unsafe for p in items),
                       "recall": sum(p.decision for p in items if p.unsafe) / max(1, sum(p.unsafe for p in items)),
                       "datasets": sorted({p.dataset for p in items}),
                       # of the items the judge flagged with categories, how many named this one
                       "named": (sum(cat.name in p.predicted_categories for p in named) / len(named)
                                 if named and cat is not None else None)}
    return rows


def _groups(preds: Sequence[Prediction]) -> dict[str, dict[str, Any]]:
    tagged = [(p, f"{p.dataset} / {g}") for p in preds for g in p.groups]
    rows = {}
    for label, group in sorted(by_key(tagged, lambda pair: pair[1]).items()):
        items = [p for p, _ in group]
        rows[label] = {"n": len(items), "n_unsafe": sum(p.unsafe for p in items),
                       "flagged": sum(p.decision for p in items) / len(items),
                       "accuracy": sum(p.correct for p in items) / len(items)}
    return rows


def _threshold(preds: Sequence[Prediction], fraction: float, default: float) -> dict[str, Any]:
    dev = [p for p in preds if in_dev_split(p.id, fraction)]
    test = [p for p in preds if not in_dev_split(p.id, fraction)]
    dev_scores, test_scores = scores_of(dev), scores_of(test)
    out: dict[str, Any] = {"dev_fraction": fraction, "n_dev": len(dev), "n_test": len(test), "default": default}
    if dev_scores is None or test_scores is None:
        out["note"] = "no threshold: the dev or test split is empty or lacks scores (run with --mode score)"
        return out
    chosen = m.best_threshold([p.unsafe for p in dev], dev_scores)
    if chosen is None:
        out["note"] = "no threshold: the dev split has no unsafe items"
        return out
    y = [p.unsafe for p in test]
    out.update(chosen=chosen, dev_f1=m.counts([p.unsafe for p in dev], [s >= chosen for s in dev_scores]).f1,
               test_at_default=group_metrics(test),
               test_at_chosen=m.counts(y, [s >= chosen for s in test_scores]).to_dict())
    return out


def summarize(predictions: Sequence[Prediction], *, policy: Policy | None = None, dev_fraction: float | None = None,
              threshold: float = 0.5, run: dict[str, Any] | None = None) -> EvalReport:
    policy = policy or Policy()
    preds = list(predictions)
    by_dataset = {k: group_metrics(v) for k, v in by_key(preds, lambda p: p.dataset).items()}
    dataset_modality = {k: Counter(p.modality for p in v).most_common(1)[0][0]
                        for k, v in by_key(preds, lambda p: p.dataset).items()}
    for name, row in by_dataset.items():
        row["modality"] = dataset_modality[name]
    modality_f1 = {}
    for modality, names in sorted(by_key(dataset_modality, lambda n: dataset_modality[n]).items()):
        f1s = [by_dataset[n]["f1"] for n in names]
        modality_f1[modality] = {"datasets": sorted(names), "mean_f1": sum(f1s) / len(f1s)}
    return EvalReport(
        predictions=preds,
        overall=group_metrics(preds),
        by_dataset=by_dataset,
        by_modality={k: group_metrics(v) for k, v in sorted(by_key(preds, lambda p: p.modality).items())},
        by_direction={k: group_metrics(v) for k, v in sorted(by_key(preds, lambda p: p.direction).items())},
        by_category=_categories(preds, policy),
        by_group=_groups(preds),
        modality_f1=modality_f1,
        threshold=_threshold(preds, dev_fraction, threshold) if dev_fraction else None,
        run=dict(run or {}),
        policy=[str(c) for c in policy],
        no_categories=sorted({p.dataset for p in preds if not p.has_categories}),
    )
