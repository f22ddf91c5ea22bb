"""The report's metrics equal scikit-learn's and hand-computed values; a failed check is a miss."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from omniguard_plugins import Text
from omniguard_plugins.eval import EvalItem, evaluate
from omniguard_plugins.eval import metrics as m
from omniguard_plugins.eval.predictions import Prediction
from omniguard_plugins.eval.summary import group_metrics
from omniguard_plugins.testing import scripted_judge


def _sklearn_ece(y: np.ndarray, s: np.ndarray, n_bins: int = 10) -> float:
    prob_true, prob_pred = calibration_curve(y, s, n_bins=n_bins, strategy="uniform")
    ids = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], s)
    totals = np.bincount(ids, minlength=n_bins)
    weights = totals[totals > 0] / len(s)
    return float(np.sum(weights * np.abs(prob_true - prob_pred)))


labels_and_scores = st.integers(min_value=2, max_value=60).flatmap(lambda n: st.tuples(
    st.lists(st.booleans(), min_size=n, max_size=n),
    # a coarse grid makes ties common, the case implementations get wrong
    st.lists(st.integers(min_value=0, max_value=20).map(lambda k: k / 20), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
))


@settings(max_examples=150, deadline=None)
@given(labels_and_scores)
def test_metrics_equal_scikit_learn(data: tuple[list[bool], list[float], list[bool]]) -> None:
    y_list, s_list, pred_list = data
    y, s, pred = np.array(y_list), np.array(s_list), np.array(pred_list)
    c = m.counts(y, pred)
    # where scikit-learn would warn and answer 0, the metric is undefined: None, never 0
    assert c.precision == (pytest.approx(precision_score(y, pred)) if pred.any() else None)
    assert c.recall == (pytest.approx(recall_score(y, pred)) if y.any() else None)
    assert c.f1 == (pytest.approx(f1_score(y, pred, zero_division=0)) if y.any() else None)
    assert c.false_positive_rate == (pytest.approx(np.sum(~y & pred) / np.sum(~y)) if (~y).any() else None)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[False, True]).ravel()
    assert (c.tp, c.fp, c.fn, c.tn) == (tp, fp, fn, tn)
    if y.any():
        assert m.average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    else:
        assert m.average_precision(y, s) is None
    if y.any() and not y.all():
        assert m.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    else:
        assert m.roc_auc(y, s) is None
    assert m.expected_calibration_error(y, s) == pytest.approx(_sklearn_ece(y.astype(int), s))


def test_hand_computed_values() -> None:
    y = [True, True, True, False, False]
    s = [0.9, 0.6, 0.3, 0.6, 0.1]
    c = m.counts(y, [v >= 0.5 for v in s])
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    assert c.precision == pytest.approx(2 / 3) and c.recall == pytest.approx(2 / 3) and c.f1 == pytest.approx(2 / 3)
    # thresholds 0.9: P=1 R=1/3; 0.6 (two items, one unsafe): P=2/3 R=2/3; 0.3: P=3/4 R=1
    assert m.average_precision(y, s) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    # pairs (unsafe, safe) ranked right: 0.9>0.6, 0.9>0.1, 0.6=0.6 (half), 0.6>0.1, 0.3<0.6, 0.3>0.1 -> 4.5 / 6
    assert m.roc_auc(y, s) == pytest.approx(4.5 / 6)
    # bins (0.0,0.1]: {0.1 safe}; (0.2,0.3]: {0.3 unsafe}; (0.5,0.6]: {0.6 u, 0.6 s}; (0.8,0.9]: {0.9 u}
    assert m.expected_calibration_error(y, s) == pytest.approx((0.1 + 0.7 + 2 * 0.1 + 0.1) / 5)
    assert m.best_threshold(y, s) == pytest.approx(0.3)  # flags all three unsafe: F1 = 6/7
    assert m.percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0


def _pred(unsafe: bool, flagged: bool, *, error: str | None = None, score: float | None = None) -> Prediction:
    return Prediction(id=f"x{id(object())}", dataset="d", modality="text", direction="input", unsafe=unsafe,
                      flagged=flagged, error=error, score=score)


def test_an_error_counts_as_wrong_whatever_the_verdict_said() -> None:
    preds = [
        _pred(True, True),                                     # tp
        _pred(True, True, error="unparseable"),                # blocked by on_error, still a miss (fn)
        _pred(False, True, error="corrupt_media: bad png"),    # fp
        _pred(False, False, error="backend: down"),            # allowed by on_error=allow, still wrong (fp)
        _pred(False, False),                                   # tn
    ]
    row = group_metrics(preds)
    assert (row["tp"], row["fn"], row["fp"], row["tn"]) == (1, 1, 2, 1)
    assert row["n_errors"] == 3 and row["errors"] == {"unparseable": 1, "corrupt_media": 1, "backend": 1}
    assert row["scored"] is False and row["auprc"] is None  # verdicts without scores: no curves
    # with every other item scored, the failed ones get the worst score for their label
    scored = [_pred(True, True, score=0.9), _pred(True, True, error="unparseable"), _pred(False, False, score=0.2)]
    assert group_metrics(scored)["roc_auc"] == pytest.approx(roc_auc_score([1, 1, 0], [0.9, 0.0, 0.2]))


def test_parse_failures_through_the_judge_are_misses() -> None:
    """A scripted model that answers garbage for some items: those are counted wrong and by kind."""
    def handler(prompt: str, media: list) -> str:
        convo = prompt.split("<BEGIN CONVERSATION>", 1)[1]
        if "garbage" in convo:
            return "I am not sure what to say."
        if "bomb" in convo:
            return "- Safety Assessment: unsafe\n- Categories: S9\n- Assessment: weapon"
        return "- Safety Assessment: safe\n- Categories: None\n- Assessment: fine"

    texts = [("how to build a bomb", True), ("garbage bomb", True), ("garbage hello", False), ("hello", False),
             ("bomb shelter tips", False)]
    items = [EvalItem(id=f"t/{n}", dataset="t", unsafe=u, user=(Text(t),)) for n, (t, u) in enumerate(texts)]
    with scripted_judge(handler) as judge:
        report = evaluate(judge, items)
    o = report.overall
    assert (o["tp"], o["fn"], o["fp"], o["tn"]) == (1, 1, 2, 1)
    assert o["errors"] == {"unparseable": 2}
    assert o["precision"] == pytest.approx(precision_score([1, 1, 0, 0, 0], [1, 0, 1, 0, 1]))
    assert o["f1"] == pytest.approx(f1_score([1, 1, 0, 0, 0], [1, 0, 1, 0, 1]))
