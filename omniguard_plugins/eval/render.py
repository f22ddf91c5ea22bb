"""Write a run folder: ``report.md``, a self-contained ``report.html`` (plots inlined as base64
PNG), ``report.json``, the plots as PNG files. ``predictions.jsonl`` is written by the runner.

Both documents come from one list of tables, so the Markdown and the HTML never disagree.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .plots import render_plots
from .summary import EvalReport

__all__ = ["write_report"]

_METRIC_HEAD = ["n", "unsafe", "safe", "precision", "recall", "F1", "accuracy", "AUPRC", "ROC-AUC", "ECE",
                "errors", "p50 ms", "p95 ms"]
_CAPTIONS = {
    "datasets_f1.png": "F1 per set", "pr_curve.png": "Precision-recall curves", "roc_curve.png": "ROC curves",
    "reliability.png": "Reliability diagram", "confusion.png": "Confusion matrices",
    "categories.png": "Recall per category",
}


_NUMERIC = re.compile(r"^(-?[\d.]+|n/a)$")


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[str]]
    note: str = ""


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _metric_row(name: str, r: dict[str, Any]) -> list[str]:
    return [name, _f(r["n"]), _f(r["n_unsafe"]), _f(r["n_safe"]), _f(r["precision"]), _f(r["recall"]), _f(r["f1"]),
            _f(r["accuracy"]), _f(r["auprc"]), _f(r["roc_auc"]), _f(r["ece"]), _f(r["n_errors"]),
            _f(r["latency_p50_ms"], 1), _f(r["latency_p95_ms"], 1)]


def _tables(report: EvalReport) -> list[Table]:
    scored = report.overall["scored"]
    score_note = "" if scored else ("AUPRC, ROC-AUC and ECE need P(unsafe) for every item: run with --mode score "
                                    "(or a backend that returns scores).")
    latency = (f"Latency is per check as the caller sees it, in check_many batches of {report.run['batch_size']}: "
               "each item waits for its batch." if report.run.get("batch_size") else "")
    score_note = " ".join(x for x in (score_note, latency) if x)
    single = [n for n, r in report.by_dataset.items() if r["single_class"]]
    tables = [
        Table("Overall", ["scope", *_METRIC_HEAD], [_metric_row("all", report.overall)], score_note),
        Table("Per modality, as the paper averages (mean F1 of the sets)", ["modality", "mean F1", "sets"],
              [[k, _f(v["mean_f1"]), ", ".join(v["datasets"])] for k, v in report.modality_f1.items()]),
        Table("Per set", ["set", "modality", *_METRIC_HEAD],
              [[n, r["modality"], *_metric_row(n, r)[1:]] for n, r in sorted(report.by_dataset.items())],
              ("Single-class sets (" + ", ".join(single) + "): precision is trivial and AUPRC/ROC-AUC undefined. "
               "On all-unsafe sets read recall (F1 there is 2R/(1+R)), on all-safe sets the false-positive rate "
               "(1 - accuracy); or pool them with sets of the same modality.") if single else ""),
        Table("Per modality (pooled items)", ["modality", *_METRIC_HEAD],
              [_metric_row(k, r) for k, r in report.by_modality.items()]),
        Table("Per direction (input = prompt label, output = response label)", ["direction", *_METRIC_HEAD],
              [_metric_row(k, r) for k, r in report.by_direction.items()]),
        Table("Per policy category (approximate mapping of each set's categories)",
              ["category", "items", "unsafe", "recall", "named by the judge", "sets"],
              [[k, _f(r["n"]), _f(r["n_unsafe"]), _f(r["recall"]), _f(r["named"]), ", ".join(r["datasets"])]
               for k, r in report.by_category.items()],
              ("Sets without categories: " + ", ".join(report.no_categories) + ".") if report.no_categories else ""),
        Table("Per upstream category", ["set / category", "items", "unsafe", "flagged", "accuracy"],
              [[k, _f(r["n"]), _f(r["n_unsafe"]), _f(r["flagged"]), _f(r["accuracy"])]
               for k, r in report.by_group.items()]),
    ]
    errors = report.overall["errors"]
    tables.append(Table("Errors by kind (each counted as a wrong answer)", ["kind", "items"],
                        [[k, str(v)] for k, v in sorted(errors.items())] or [["none", "0"]]))
    t = report.threshold
    if t is not None:
        rows = [["dev items", _f(t["n_dev"])], ["test items", _f(t["n_test"])], ["default threshold", _f(t["default"])]]
        if "chosen" in t:
            d, c = t["test_at_default"], t["test_at_chosen"]
            rows += [["chosen on dev (max F1)", _f(t["chosen"])], ["dev F1 at chosen", _f(t["dev_f1"])],
                     ["test F1 at default", _f(d["f1"])], ["test F1 at chosen", _f(c["f1"])],
                     ["test precision / recall at chosen", f"{_f(c['precision'])} / {_f(c['recall'])}"]]
        tables.append(Table(f"Threshold from a {t['dev_fraction']:.0%} dev split", ["", "value"], rows, t.get("note", "")))
    return tables


def _header(report: EvalReport) -> list[tuple[str, str]]:
    run = report.run
    facts = [("model", str(run.get("model"))), ("backend", str(run.get("backend"))), ("mode", str(run.get("mode"))),
             ("items", str(report.overall["n"])), ("policy", "; ".join(report.policy)),
             ("written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    if run.get("items_per_s"):
        facts.append(("throughput", f"{run['items_per_s']:.2f} items/s (batch {run.get('batch_size')})"))
    model = run.get("model")
    if model and (Path(str(model)) / "omniguard_tiny.json").exists():
        facts.append(("note", "tiny test checkpoint: these numbers mean nothing about real safety"))
    return facts


def _markdown(report: EvalReport, tables: list[Table], plots: list[str]) -> str:
    out = ["# OmniGuard evaluation", ""]
    out += [f"- **{k}**: {v}" for k, v in _header(report)]
    for t in tables:
        out += ["", f"## {t.title}", "", "| " + " | ".join(t.head) + " |", "|" + "---|" * len(t.head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
        if t.note:
            out += ["", t.note]
    out += ["", "## Plots", ""] + [f"![{_CAPTIONS[p]}]({p})" for p in plots]
    out += ["", "Every item's verdict, score, latency and error: `predictions.jsonl`."]
    return "\n".join(out) + "\n"


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
table{border-collapse:collapse;margin:6px 0 4px;font-size:12.5px}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right}td.t,th:first-child{text-align:left}th{background:#f3f4f6}p.note{color:#555;
font-size:12.5px;margin:2px 0 10px}.plots{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;border:1px solid
#e5e7eb;padding:6px}figure img{max-width:540px;display:block}figcaption{font-size:12px;color:#555}
ul.facts{padding-left:18px}"""


def _html(report: EvalReport, tables: list[Table], plots: dict[str, bytes]) -> str:
    esc = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>OmniGuard evaluation</title>",
           f"<style>{_CSS}</style></head><body><h1>OmniGuard evaluation</h1><ul class='facts'>"]
    out += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in _header(report)]
    out.append("</ul><h2>Plots</h2><div class='plots'>")
    for name, png in plots.items():
        data = base64.b64encode(png).decode()
        out.append(f"<figure><img alt='{esc(_CAPTIONS[name])}' src='data:image/png;base64,{data}'>"
                   f"<figcaption>{esc(_CAPTIONS[name])} ({esc(name)})</figcaption></figure>")
    out.append("</div>")
    for t in tables:
        out.append(f"<h2>{esc(t.title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in t.head) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" if _NUMERIC.match(c) else f"<td class='t'>{esc(c)}</td>"
                                 for c in row) + "</tr>" for row in t.rows]
        out.append("</table>" + (f"<p class='note'>{esc(t.note)}</p>" if t.note else ""))
    out.append("<p class='note'>Every item's verdict, score, latency and error: predictions.jsonl.</p></body></html>")
    return "\n".join(out)


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write the report files into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(report)
    tables = _tables(report)
    written = {}
    for name, png in plots.items():
        (out / name).write_bytes(png)
        written[name] = out / name
    docs = {"report.md": _markdown(report, tables, list(plots)), "report.html": _html(report, tables, plots),
            "report.json": json.dumps(report.to_dict(), indent=2, default=str)}
    for name, text in docs.items():
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name
    return written
