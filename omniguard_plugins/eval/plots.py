"""The report's plots as PNG bytes (matplotlib, Agg backend: no display needed).

Curves need scores; a run without them gets the confusion matrices and bar charts only, and
the report says why the curves are missing. A set left off a curve plot is named under the
plot with the reason; every curve has its own colour and line style. An undefined value is
drawn as "n/a", never as a zero bar.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from . import metrics as m
from .predictions import Prediction
from .summary import EvalReport, by_key, scores_of

__all__ = ["CAPTIONS", "render_plots"]

CAPTIONS = {
    "datasets_f1.png": "F1 per set", "pr_curve.png": "Precision-recall curves", "roc_curve.png": "ROC curves",
    "reliability.png": "Reliability diagram", "confusion.png": "Confusion matrices",
    "categories.png": "Detection recall per category", "threshold_sweep.png": "Threshold sweep",
}
_MAX_CURVES = 20
_MIN_CURVE_ITEMS = 10
_STYLES = ("-", "--", "-.", ":")


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


def _curve_sets(report: EvalReport) -> tuple[list[tuple[str, list[Prediction], list[float]]], dict[str, str]]:
    """Overall and each dataset with both classes, scores and enough items for a curve to mean
    something (the largest first, at most 20), and why each other set is left off."""
    out: list[tuple[str, list[Prediction], list[float]]] = []
    left: dict[str, str] = {}
    groups = sorted(by_key(report.predictions, lambda p: p.dataset).items(), key=lambda kv: -len(kv[1]))
    for name, preds in [("all", report.predictions), *groups]:
        scores = scores_of(preds)
        y = [p.unsafe for p in preds]
        if scores is None:
            left[name] = "no scores"
        elif all(y) or not any(y):
            left[name] = "one label only"
        elif name != "all" and len(preds) < _MIN_CURVE_ITEMS:
            left[name] = f"under {_MIN_CURVE_ITEMS} items"
        elif len(out) > _MAX_CURVES:
            left[name] = "over the plot's 20 curves"
        else:
            out.append((name, preds, scores))
    return out, left


def _left_note(left: dict[str, str]) -> str:
    if left.get("all") == "no scores":
        return ""  # no curve at all: the report says why
    reasons: dict[str, list[str]] = {}
    for name, why in left.items():
        reasons.setdefault(why, []).append(name)
    return "; ".join(f"not drawn ({why}): {', '.join(names)}" for why, names in reasons.items())


def _style(n: int) -> dict[str, Any]:
    from matplotlib import colormaps

    return {"color": colormaps["tab20"](n % 20), "ls": _STYLES[(n // 10) % len(_STYLES)]}


def _curves(report: EvalReport, kind: str) -> tuple[bytes | None, str]:
    sets, left = _curve_sets(report)
    note = _left_note(left)
    if not sets:
        return None, note
    fig = _figure(6.4, 5.0)
    ax = fig.subplots()
    for n, (name, preds, scores) in enumerate(sets):
        y = [p.unsafe for p in preds]
        style = {"color": "black", "ls": "-", "lw": 2.6} if name == "all" else {**_style(n - 1), "lw": 1.3}
        if kind == "pr":
            precision, recall = m.pr_curve(y, scores)
            ax.step(recall, precision, where="post", label=f"{name} (AP {m.average_precision(y, scores):.2f})", **style)
        else:
            fpr, tpr = m.roc_curve(y, scores)
            ax.plot(fpr, tpr, label=f"{name} (AUC {m.roc_auc(y, scores):.2f})", **style)
    if kind == "pr":
        ax.set(xlabel="recall (unsafe)", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    else:
        ax.plot([0, 1], [0, 1], ls=":", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=6.5, loc="lower left" if kind == "pr" else "lower right")
    ax.grid(alpha=0.3)
    return _png(fig), note


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
        f1 = "n/a" if row["f1"] is None else f"{row['f1']:.2f}"
        ax.set_title(f"{name}  F1 {f1}", fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("label", fontsize=8)
    return _png(fig)


def _bars(labels: Sequence[str], values: Sequence[float | None], title: str, xlabel: str) -> bytes | None:
    if not labels:
        return None
    fig = _figure(7.0, 0.9 + 0.28 * len(labels))
    ax = fig.subplots()
    ax.barh(range(len(labels)), [0.0 if v is None else v for v in values], color="#55a868")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(0.01 if v is None else min(v + 0.01, 0.93), i, "n/a" if v is None else f"{v:.2f}", va="center",
                fontsize=7, color="#b91c1c" if v is None else "black")
    ax.set(xlim=(0, 1), xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _sweep(report: EvalReport) -> bytes | None:
    op = report.operating
    if op is None:
        return None
    rows = op["sweep"]
    fig = _figure(6.4, 4.4)
    ax = fig.subplots()
    t = [r["threshold"] for r in rows]
    for key, colour in (("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868"), ("fpr", "#c44e52")):
        ax.plot(t, [float("nan") if r[key] is None else r[key] for r in rows], "o-", ms=3, color=colour,
                label=key.upper() if key in ("f1", "fpr") else key)
    ax.axvline(op["default"], ls=":", color="grey", label=f"judge's threshold {op['default']:g}")
    chosen = (report.threshold or {}).get("chosen")
    if chosen is not None:
        ax.axvline(chosen, ls="--", color="black", label=f"chosen on dev {chosen:.6g}")
    ax.set(xlabel="threshold (unsafe at P(unsafe) >= t)", ylabel="value", title="Threshold sweep (n/a points left out)",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def render_plots(report: EvalReport) -> tuple[dict[str, bytes], dict[str, str]]:
    """File name -> PNG bytes, for the plots this report can draw; and file name -> a note on
    what a plot leaves out."""
    cats = report.by_category
    datasets = sorted(report.by_dataset.items())
    pr, pr_note = _curves(report, "pr")
    roc, roc_note = _curves(report, "roc")
    plots = {
        "pr_curve.png": pr,
        "roc_curve.png": roc,
        "threshold_sweep.png": _sweep(report),
        "reliability.png": _reliability(report),
        "confusion.png": _confusion(report),
        "datasets_f1.png": _bars([n for n, _ in datasets], [r["f1"] for _, r in datasets],
                                 "F1 per set (n/a: no unsafe items, read FPR; all-unsafe sets: 2R/(1+R))", "F1"),
        "categories.png": _bars(list(cats), [r["recall"] for r in cats.values()],
                                "Detection recall per category (its unsafe items flagged)", "recall"),
    }
    notes = {name: note for name, note in (("pr_curve.png", pr_note), ("roc_curve.png", roc_note)) if note}
    return {name: png for name, png in plots.items() if png is not None}, notes
