"""Binary metrics with unsafe as the positive class, in numpy (no scikit-learn at run time).

Each function matches scikit-learn's definition where the metric is defined (the tests hold them
equal): average precision is the step-wise sum (not trapezoids), ROC-AUC averages ties, and the
calibration bins are scikit-learn's ``calibration_curve`` bins (``uniform``, right-closed).
An undefined metric is ``None``, never 0: precision with nothing flagged, recall and F1 with no
unsafe item, the false-positive rate with no safe item (scikit-learn would print a warning and
give 0, which then drags means down). Functions that need both classes return None without them.

Uncertainty: :func:`bootstrap_ci` gives percentile 95% intervals from resampled items (one
seeded draw of indices, so a report is reproducible), :func:`paired_bootstrap` the interval of a
difference between two runs on the same items, and :func:`mcnemar_p` the exact McNemar test on
the items one run gets right and the other wrong.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["BOOTSTRAP_ROUNDS", "Counts", "average_precision", "best_threshold", "bootstrap_ci", "calibration_bins",
           "mean_f1_ci", "paired_bootstrap_scores", "resample_indices",
           "choose_threshold", "counts", "expected_calibration_error", "mcnemar_p", "paired_bootstrap", "percentile",
           "pr_curve", "recall_at_fpr", "roc_auc", "roc_curve", "sweep"]

#: resamples per bootstrap interval: enough for stable 2.5/97.5 percentiles at report precision
BOOTSTRAP_ROUNDS = 1000


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
    def precision(self) -> float | None:
        """None when nothing was flagged."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """None without unsafe items."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """2TP / (2TP + FP + FN), as scikit-learn; None without unsafe items (an all-safe set is
        read by its false-positive rate: F1 there is 0 or undefined whatever the judge does)."""
        if self.tp + self.fn == 0:
            return None
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float | None:
        return (self.tp + self.tn) / self.n if self.n else None

    @property
    def false_positive_rate(self) -> float | None:
        """None without safe items."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None

    def to_dict(self) -> dict[str, float | int | None]:
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
    precision, recall = pr_curve(y_true, scores)
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
    fpr, tpr = roc_curve(y_true, scores)
    # the trapezoid rule, written out (numpy 2 renamed trapz to trapezoid)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


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
    bins = calibration_bins(y_true, scores, n_bins)
    return float(sum(b["n"] / n * abs(b["frac_unsafe"] - b["mean_score"]) for b in bins))


def best_threshold(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """The score threshold (predict unsafe at score >= t) with the highest F1; the lowest such t."""
    return choose_threshold(y_true, scores, max_fpr=None)


def _at_thresholds(y: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """TP, FP, FN, TN for "unsafe at score >= t", for every t at once."""
    flagged = s[None, :] >= thresholds[:, None]
    tp = (flagged & y[None, :]).sum(axis=1)
    fp = (flagged & ~y[None, :]).sum(axis=1)
    return tp, fp, int(y.sum()) - tp, int((~y).sum()) - fp


def choose_threshold(y_true: Sequence[bool], scores: Sequence[float], *, max_fpr: float | None = 0.05) -> float | None:
    """The rule ``--dev-split`` states: among thresholds (each distinct score; unsafe at score
    >= t) whose false-positive rate is at most ``max_fpr``, the one with the highest F1, the
    highest such t on a tie (fewest flags). None without unsafe items or when no threshold keeps
    the FPR under the cap. ``max_fpr=None``: no cap (plain max F1, lowest t on a tie)."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if not y.any():
        return None
    thresholds = np.unique(s)
    tp, fp, fn, tn = _at_thresholds(y, s, thresholds)
    f1 = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    ok = np.ones_like(f1, dtype=bool)
    if max_fpr is not None:
        negatives = fp + tn
        ok = (fp <= max_fpr * negatives) if negatives[0] else ok
    if not ok.any():
        return None
    f1 = np.where(ok, f1, -1.0)
    best = np.flatnonzero(f1 == f1.max())
    return float(thresholds[best[-1] if max_fpr is not None else best[0]])


def sweep(y_true: Sequence[bool], scores: Sequence[float], thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """One row per threshold: counts, precision, recall, F1, FPR and the share flagged."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    tp, fp, fn, tn = _at_thresholds(y, s, t)
    rows = []
    for i, threshold in enumerate(t):
        c = Counts(int(tp[i]), int(fp[i]), int(fn[i]), int(tn[i]))
        rows.append({"threshold": float(threshold), **c.to_dict(), "flagged": (c.tp + c.fp) / c.n if c.n else None})
    return rows


def recall_at_fpr(y_true: Sequence[bool], scores: Sequence[float], target: float) -> dict[str, Any] | None:
    """The best recall with a false-positive rate at most ``target``, and the threshold (the
    highest one reaching it) and FPR it takes. None without both classes."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if not _both_classes(y):
        return None
    thresholds = np.r_[np.unique(s), np.inf]  # inf: flag nothing (FPR 0)
    tp, fp, fn, tn = _at_thresholds(y, s, thresholds)
    fpr = fp / (fp + tn)
    recall = tp / (tp + fn)
    ok = fpr <= target + 1e-12
    best = np.flatnonzero(ok & (recall == recall[ok].max()))[-1]
    return {"target_fpr": target, "recall": float(recall[best]), "fpr": float(fpr[best]),
            "threshold": float(thresholds[best]) if np.isfinite(thresholds[best]) else None}


# ---------------------------------------------------------------------- uncertainty


def _metric_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric per resample, NaN where undefined (the same rules as :class:`Counts`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pos, flagged, neg = tp + fn, tp + fp, fp + tn
        return {
            "precision": np.where(flagged > 0, tp / flagged, np.nan),
            "recall": np.where(pos > 0, tp / pos, np.nan),
            "f1": np.where(pos > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "fpr": np.where(neg > 0, fp / neg, np.nan),
            "accuracy": (tp + tn) / np.maximum(1, tp + fp + fn + tn),
        }


def _resample_counts(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    yy, pp = y[idx], p[idx]
    return ((yy & pp).sum(1), (~yy & pp).sum(1), (yy & ~pp).sum(1), (~yy & ~pp).sum(1))


def _interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The percentile interval of the defined resamples; None when under half are defined."""
    defined = values[~np.isnan(values)]
    if len(defined) < len(values) / 2 or len(defined) == 0:
        return None
    lo, hi = np.percentile(defined, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def resample_indices(n: int, *, seed: int = 0, rounds: int = BOOTSTRAP_ROUNDS,
                     strata: Sequence[Any] | None = None) -> np.ndarray:
    """``rounds`` x ``n`` indices drawn with replacement (``numpy.random.default_rng(seed)``);
    with ``strata``, each stratum (a set) is resampled within itself and keeps its size."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(rounds, n))
    labels = np.asarray(strata)
    out = np.empty((rounds, n), dtype=np.int64)
    for value in dict.fromkeys(strata):
        members = np.flatnonzero(labels == value)
        out[:, members] = members[rng.integers(0, len(members), size=(rounds, len(members)))]
    return out


def bootstrap_ci(y_true: Sequence[bool], y_pred: Sequence[bool], *, seed: int = 0, rounds: int = BOOTSTRAP_ROUNDS,
                 strata: Sequence[Any] | None = None) -> dict[str, list[float] | None]:
    """95% percentile bootstrap intervals of precision, recall, F1, FPR and accuracy: the items
    resampled with replacement ``rounds`` times (within each stratum when given). A metric
    undefined in over half the resamples gets None."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    if len(y) == 0:
        return {k: None for k in ("precision", "recall", "f1", "fpr", "accuracy")}
    idx = resample_indices(len(y), seed=seed, rounds=rounds, strata=strata)
    return {k: _interval(v) for k, v in _metric_arrays(*_resample_counts(y, p, idx)).items()}


def mean_f1_ci(y_true: Sequence[bool], y_pred: Sequence[bool], sets: Sequence[str], *, seed: int = 0,
               rounds: int = BOOTSTRAP_ROUNDS) -> list[float] | None:
    """The interval of the unweighted mean of per-set F1 (sets without unsafe items left out),
    each set resampled within itself."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    labels = np.asarray(sets)
    kept = [s for s in dict.fromkeys(sets) if y[labels == s].any()]
    if not kept:
        return None
    idx = resample_indices(len(y), seed=seed, rounds=rounds, strata=list(sets))
    f1s = []
    for name in kept:
        members = np.flatnonzero(labels == name)
        f1s.append(_metric_arrays(*_resample_counts(y, p, idx[:, members]))["f1"])
    with warnings.catch_warnings():  # a resample whose sets all lack unsafe items: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return _interval(np.nanmean(np.vstack(f1s), axis=0))


def _paired(y: np.ndarray, a: np.ndarray, b: np.ndarray, per_resample: Callable[..., dict[str, np.ndarray]],
            seed: int, rounds: int) -> dict[str, dict[str, float] | None]:
    if len(y) == 0:
        return {}
    idx = resample_indices(len(y), seed=seed, rounds=rounds)
    ma, mb = per_resample(y, a, idx), per_resample(y, b, idx)
    return {key: _difference(mb[key] - ma[key]) for key in ma}


def _count_arrays(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    return _metric_arrays(*_resample_counts(y, p, idx))


def _score_arrays(y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    rows = [(average_precision(y[r], s[r]), roc_auc(y[r], s[r]), expected_calibration_error(y[r], s[r]))  # type: ignore[arg-type]
            for r in idx]
    return {key: np.array([np.nan if row[k] is None else row[k] for row in rows], dtype=float)
            for k, key in enumerate(("auprc", "roc_auc", "ece"))}


def paired_bootstrap(y_true: Sequence[bool], pred_a: Sequence[bool], pred_b: Sequence[bool], *, seed: int = 0,
                     rounds: int = BOOTSTRAP_ROUNDS) -> dict[str, dict[str, float] | None]:
    """Per metric, the 95% interval of (B - A) over the same resampled items, and the two-sided
    bootstrap p-value (twice the smaller share of resampled differences on either side of 0)."""
    return _paired(np.asarray(y_true, dtype=bool), np.asarray(pred_a, dtype=bool), np.asarray(pred_b, dtype=bool),
                   _count_arrays, seed, rounds)


def paired_bootstrap_scores(y_true: Sequence[bool], scores_a: Sequence[float], scores_b: Sequence[float], *,
                            seed: int = 0, rounds: int = BOOTSTRAP_ROUNDS) -> dict[str, dict[str, float] | None]:
    """As :func:`paired_bootstrap`, for AUPRC, ROC-AUC and ECE of two runs' scores."""
    return _paired(np.asarray(y_true, dtype=bool), np.asarray(scores_a, dtype=float),
                   np.asarray(scores_b, dtype=float), _score_arrays, seed, rounds)


def _difference(diff: np.ndarray) -> dict[str, float] | None:
    interval = _interval(diff)
    if interval is None:
        return None
    defined = diff[~np.isnan(diff)]
    p = min(1.0, 2 * min(float(np.mean(defined <= 0)), float(np.mean(defined >= 0))))
    return {"lo": interval[0], "hi": interval[1], "p": p}


def mcnemar_p(right_a: Sequence[bool], right_b: Sequence[bool]) -> float | None:
    """Exact two-sided McNemar test: of the items exactly one run gets right, is the split
    further from even than chance allows? None when no item differs."""
    a = np.asarray(right_a, dtype=bool)
    b = np.asarray(right_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        return None
    from math import comb

    k = min(only_a, only_b)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None
