"""The report's plots as PNG bytes (matplotlib, Agg backend: no display needed).

Curves need scores; a run without them gets the confusion matrices and bar charts only, and
the report says why the curves are missing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from . import metrics as m
from .predictions import Prediction
from .summary import EvalReport, by_key, scores_of

__all__ = ["render_plots"]

_MAX_CURVES = 10
_MIN_CURVE_ITEMS = 10


def _figure(width: float, height: float) -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the report's plots need matplotlib: pip install 'omniguard-plugins[eval]' "
                          "(the predictions are kept; rerun to write the report)") from None

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _curve_sets(report: EvalReport) -> list[tuple[str, list[Prediction], list[float]]]:
    """Overall and each dataset with both classes, scores and enough items for a curve to mean
    something (the largest first, at most 10)."""
    out = []
    groups = sorted(by_key(report.predictions, lambda p: p.dataset).items(), key=lambda kv: -len(kv[1]))
    for name, preds in [("all", report.predictions), *groups]:
        scores = scores_of(preds)
        y = [p.unsafe for p in preds]
        if scores is not None and any(y) and not all(y) and (name == "all" or len(preds) >= _MIN_CURVE_ITEMS):
            out.append((name, preds, scores))
    return out[: _MAX_CURVES + 1]


def _curves(report: EvalReport, kind: str) -> bytes | None:
    sets = _curve_sets(report)
    if not sets:
        return None
    fig = _figure(6.4, 5.0)
    ax = fig.subplots()
    for name, preds, scores in sets:
        y = [p.unsafe for p in preds]
        width = 2.6 if name == "all" else 1.2
        if kind == "pr":
            precision, recall = m.pr_curve(y, scores)
            ax.step(recall, precision, where="post", lw=width, label=f"{name} (AP {m.average_precision(y, scores):.2f})")
        else:
            fpr, tpr = m.roc_curve(y, scores)
            ax.plot(fpr, tpr, lw=width, label=f"{name} (AUC {m.roc_auc(y, scores):.2f})")
    if kind == "pr":
        ax.set(xlabel="recall (unsafe)", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    else:
        ax.plot([0, 1], [0, 1], ls=":", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower left" if kind == "pr" else "lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def _reliability(report: EvalReport) -> bytes | None:
    scores = scores_of(report.predictions)
    if scores is None:
        return None
    bins = m.calibration_bins([p.unsafe for p in report.predictions], scores)
    fig = _figure(6.4, 5.0)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
    top.bar(centers, [b["frac_unsafe"] for b in bins], width=0.09, color="#4c72b0", alpha=0.8, label="fraction unsafe")
    top.plot([b["mean_score"] for b in bins], [b["frac_unsafe"] for b in bins], "o-", color="#dd8452", label="bin mean")
    top.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    ece = report.overall.get("ece")
    top.set(ylabel="fraction unsafe", title=f"Reliability (ECE {ece:.3f})" if ece is not None else "Reliability",
            xlim=(0, 1), ylim=(0, 1.02))
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(centers, [b["n"] for b in bins], width=0.09, color="#8c8c8c")
    bottom.set(xlabel="P(unsafe)", ylabel="items")
    return _png(fig)


def _confusion(report: EvalReport) -> bytes:
    panels = [("all", report.overall), *sorted(report.by_dataset.items())]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(2.4 * cols, 2.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, (name, row) in zip(axes.flat, panels):
        grid = [[row["tn"], row["fp"]], [row["fn"], row["tp"]]]
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=max(1, max(map(max, grid))))
        for i in range(2):
            for j in range(2):
                ax.text(j, i, str(grid[i][j]), ha="center", va="center", fontsize=10,
                        color="white" if grid[i][j] > max(map(max, grid)) / 2 else "black")
        ax.set_xticks([0, 1], ["safe", "unsafe"], fontsize=7)
        ax.set_yticks([0, 1], ["safe", "unsafe"], fontsize=7)
        ax.set_title(f"{name}  F1 {row['f1']:.2f}", fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("label", fontsize=8)
    return _png(fig)


def _bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> bytes | None:
    if not labels:
        return None
    fig = _figure(7.0, 0.9 + 0.28 * len(labels))
    ax = fig.subplots()
    ax.barh(range(len(labels)), values, color="#55a868")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(min(v + 0.01, 0.93), i, f"{v:.2f}", va="center", fontsize=7)
    ax.set(xlim=(0, 1), xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def render_plots(report: EvalReport) -> dict[str, bytes]:
    """File name -> PNG bytes, for the plots this report can draw."""
    cats = report.by_category
    datasets = sorted(report.by_dataset.items())
    plots = {
        "pr_curve.png": _curves(report, "pr"),
        "roc_curve.png": _curves(report, "roc"),
        "reliability.png": _reliability(report),
        "confusion.png": _confusion(report),
        "datasets_f1.png": _bars([n for n, _ in datasets], [r["f1"] for _, r in datasets],
                                 "F1 per set (unsafe = positive; single-class sets: 2R/(1+R))", "F1"),
        "categories.png": _bars(list(cats), [r["recall"] for r in cats.values()],
                                "Recall per category (unsafe items the set maps to it)", "recall"),
    }
    return {name: png for name, png in plots.items() if png is not None}
