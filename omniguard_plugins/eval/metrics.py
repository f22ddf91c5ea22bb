"""Binary metrics with unsafe as the positive class, in numpy (no scikit-learn at run time).

Each function matches scikit-learn's definition (the tests hold them equal): precision and
recall are 0 when undefined, average precision is the step-wise sum (not trapezoids), ROC-AUC
averages ties, and the calibration bins are scikit-learn's ``calibration_curve`` bins
(``uniform``, right-closed). Functions that need both classes return None without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Counts", "average_precision", "best_threshold", "calibration_bins", "counts",
           "expected_calibration_error", "percentile", "pr_curve", "roc_auc", "roc_curve"]


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "accuracy": self.accuracy, "fpr": self.false_positive_rate}


def counts(y_true: Sequence[bool], y_pred: Sequence[bool]) -> Counts:
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    return Counts(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p)), int(np.sum(~t & ~p)))


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any() and not y.all())


def _curve_points(y_true: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest first."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps.astype(float), fps.astype(float), s[last]


def pr_curve(y_true: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall), recall rising, starting at recall 0 with precision 1."""
    tps, fps, _ = _curve_points(y_true, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] else np.zeros_like(tps)
    return np.r_[1.0, precision], np.r_[0.0, recall]


def average_precision(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the PR curve as scikit-learn's ``average_precision_score``: sum of
    (R_n - R_{n-1}) * P_n over distinct thresholds. None without positives."""
    y = np.asarray(y_true, dtype=bool)
    if not y.any():
        return None
    precision, recall = pr_curve(y, scores)
    return float(np.sum(np.diff(recall) * precision[1:]))


def roc_curve(y_true: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), from (0, 0)."""
    tps, fps, _ = _curve_points(y_true, scores)
    return np.r_[0.0, fps / fps[-1] if fps[-1] else fps], np.r_[0.0, tps / tps[-1] if tps[-1] else tps]


def roc_auc(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC-AUC (the Mann-Whitney statistic, ties count half). None with one class only."""
    y = np.asarray(y_true, dtype=bool)
    if not _both_classes(y):
        return None
    fpr, tpr = roc_curve(y, scores)
    return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


def calibration_bins(y_true: Sequence[bool], scores: Sequence[float], n_bins: int = 10) -> list[dict[str, float]]:
    """Per non-empty bin: mean score (confidence in unsafe), fraction unsafe, count."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], s)
    sums = np.bincount(ids, weights=s, minlength=n_bins)
    trues = np.bincount(ids, weights=y, minlength=n_bins)
    totals = np.bincount(ids, minlength=n_bins)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "mean_score": float(sums[b] / totals[b]),
             "frac_unsafe": float(trues[b] / totals[b]), "n": int(totals[b])}
            for b in range(n_bins) if totals[b]]


def expected_calibration_error(y_true: Sequence[bool], scores: Sequence[float], n_bins: int = 10) -> float | None:
    """Sum over bins of (bin share) * |fraction unsafe - mean P(unsafe)|."""
    n = len(scores)
    if n == 0:
        return None
    return float(sum(b["n"] / n * abs(b["frac_unsafe"] - b["mean_score"]) for b in calibration_bins(y_true, scores, n_bins)))


def best_threshold(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """The score threshold (predict unsafe at score >= t) with the highest F1; the lowest such t."""
    y = np.asarray(y_true, dtype=bool)
    if not y.any():
        return None
    best, best_f1 = None, -1.0
    for t in np.unique(np.asarray(scores, dtype=float)):
        f1 = counts(y, np.asarray(scores) >= t).f1
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None
