"""Write a run folder: ``report.md``, a self-contained ``report.html`` (plots inlined as base64
PNG), ``report.json``, the plots as PNG files. ``predictions.jsonl`` is written by the runner.

Both documents come from one list of tables, so the Markdown and the HTML never disagree. An
undefined metric reads "n/a" (``null`` in report.json); an interval is "0.81 [0.78, 0.84]".
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

from .localize import LOCALIZE_HEAD, table_rows
from .plots import CAPTIONS, render_plots
from .runinfo import TINY_NOTE
from .summary import EvalReport

__all__ = ["write_report"]

_METRIC_HEAD = ["n", "unsafe", "safe", "precision", "recall", "F1", "FPR", "accuracy", "AUPRC", "ROC-AUC", "ECE",
                "errors"]
_NUMERIC = re.compile(r"^(-?[\d.]+%?( \[-?[\d.]+, -?[\d.]+\])?|n/a)$")
LOCALIZE_NOTE = ("Each item of a derived set holds one unsafe piece at a known place; it is judged with localize=True. "
                 "Unsafe verdicts: the items the judge called unsafe (only those are localized and scored). Hit rate: "
                 "the evidence overlaps the truth (the right part; for text and time an overlapping span). Mean IoU: "
                 "characters or seconds of the evidence against the truth (images: 1 over the parts named). Extra "
                 "checks: the judge requests localization spent per unsafe verdict; capped: verdicts that hit the cap.")


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


def _ci(value: Any, interval: list[float] | None) -> str:
    """``0.812 [0.780, 0.840]``; the point alone when there is no interval."""
    if value is None or not interval:
        return _f(value)
    return f"{_f(value)} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _exact(value: float | None) -> str:
    """A threshold as chosen, never rounded to a different number (0.000734, not 0.001)."""
    return "n/a" if value is None else repr(float(value))


def _point(value: float | None) -> str:
    """An operating point's threshold to six significant digits (0.000734, 0.920872); None is
    the point that flags nothing."""
    return "above every score" if value is None else f"{value:.6g}"


def _metric_row(name: str, r: dict[str, Any]) -> list[str]:
    ci = r.get("ci") or {}
    return [name, _f(r["n"]), _f(r["n_unsafe"]), _f(r["n_safe"]), _ci(r["precision"], ci.get("precision")),
            _ci(r["recall"], ci.get("recall")), _ci(r["f1"], ci.get("f1")), _ci(r["fpr"], ci.get("fpr")),
            _f(r["accuracy"]), _f(r["auprc"]), _f(r["roc_auc"]), _f(r["ece"]), _f(r["n_errors"])]


def _notes(report: EvalReport) -> str:
    scored = report.overall["scored"]
    parts = ["Undefined metrics read n/a: precision when nothing was flagged, recall and F1 without unsafe items, "
             "FPR without safe items. Brackets: 95% bootstrap interval (items resampled within each set, "
             f"{report.run.get('seed') or 0} as seed, 1000 rounds)."]
    if not scored:
        parts.append("AUPRC, ROC-AUC and ECE need P(unsafe) for every item: run with --mode score "
                     "(or a backend that returns scores; critique mode returns none).")
    return " ".join(parts)


def _modality_table(report: EvalReport) -> Table:
    rows = [[k, _ci(v["mean_f1"], v["mean_f1_ci"]), ", ".join(v["f1_datasets"]) or "none",
             _ci(v["pooled_f1"], v["pooled_f1_ci"]), _ci(v["pooled_fpr"], v["pooled_fpr_ci"]),
             ", ".join(v["fpr_datasets"]) or "none"]
            for k, v in report.modality_f1.items()]
    return Table("Per modality: unweighted mean of set F1, and pooled F1",
                 ["modality", "mean set F1", "sets in the mean", "pooled F1", "pooled FPR",
                  "all-safe sets (read by FPR)"],
                 rows, "Mean set F1 is the plain mean of the F1 of each set of that modality that holds unsafe items; "
                       "sets without unsafe items have no F1 and are read by their false-positive rate instead. Pooled "
                       "F1 and FPR count all items of those sets together. Whether this is how the OmniGuard paper "
                       "averages has not been verified here.")


def _set_table(report: EvalReport) -> Table:
    rows = []
    for n, r in sorted(report.by_dataset.items()):
        ms = r["latency"]["batched_ms_per_item"]
        rows.append([n, r["modality"], r["kind"], *_metric_row(n, r)[1:], _f(ms, 1)])
    single = [n for n, r in report.by_dataset.items() if r["single_class"]]
    note = ("Single-class sets (" + ", ".join(sorted(single)) + "): on all-unsafe sets read recall (F1 there is "
            "2R/(1+R), precision is trivially 1 or n/a); on all-safe sets read FPR (recall and F1 are n/a)."
            ) if single else ""
    return Table("Per set", ["set", "modality", "labels", *_METRIC_HEAD, "ms/item (batched)"], rows, note)


def _pooled_note(report: EvalReport) -> str:
    """A pooled AUPRC over sets that each hold one label ranks the sets, not the harm: say so."""
    names = []
    for modality, row in report.by_modality.items():
        sets = {p.dataset for p in report.predictions if p.modality == modality}
        if row["auprc"] is not None and len(sets) > 1 and all(report.by_dataset[s]["single_class"] for s in sets):
            names.append(modality)
    if not names:
        return ""
    return (f"{', '.join(names)}: every set pooled here holds one label only, so AUPRC and ROC-AUC measure how the "
            "scores separate the sets (e.g. unsafe typography from harmless photos), not how they find harm.")


def _category_table(report: EvalReport) -> Table:
    rows = [[k, _f(r["n"]), _f(r["n_unsafe"]), _f(r["recall"]), _f(r["precision_named"]), _f(r["recall_named"]),
             _f(r["f1_named"]), _f(r["named"]), ", ".join(r["datasets"])] for k, r in report.by_category.items()]
    note = ("Detection recall: the category's unsafe items flagged at all. Named P/R/F1: the judge flagged the item "
            "and named this category, against the set's own (approximate) mapping, over the items of sets that "
            "carry categories.")
    if report.no_categories:
        note += (" Sets with unsafe items but no categories (not in these rows): "
                 + ", ".join(report.no_categories) + ".")
    return Table("Per policy category", ["category", "items", "unsafe", "detection recall", "named precision",
                                         "named recall", "named F1", "share named", "sets"], rows, note)


def _latency_table(report: EvalReport) -> Table:
    lat = report.latency
    bs = report.run.get("batch_size")
    rows = [["items judged alone (batch 1)", _f(lat["n_single"])], ["per-item p50 ms (batch 1)", _f(lat["p50_ms"], 1)],
            ["per-item p95 ms (batch 1)", _f(lat["p95_ms"], 1)], ["per-item p99 ms (batch 1)", _f(lat["p99_ms"], 1)],
            ["throughput, items/s (batch 1, one after another)", _f(lat["single_items_per_s"], 2)],
            [f"items judged in batches (up to {bs})", _f(lat["n_batched"])],
            ["throughput, items/s (batched)", _f(lat["batched_items_per_s"], 2)],
            ["batch wall time p50 / p95 ms", f"{_f(lat['batch_p50_ms'], 1)} / {_f(lat['batch_p95_ms'], 1)}"]]
    for name, r in report.by_modality.items():
        if r["latency"]["n_single"]:
            rows.append([f"per-item p50 / p95 ms, {name} (batch 1, n={r['latency']['n_single']})",
                         f"{_f(r['latency']['p50_ms'], 1)} / {_f(r['latency']['p95_ms'], 1)}"])
    return Table("Latency and throughput", ["", "value"], rows,
                 "Per-item latency is measured on a sample judged one at a time (--latency-sample), so no batch wait "
                 "is in it; throughput is items over the wall time of the batched calls. Batches never span sets.")


def _operating_tables(report: EvalReport) -> list[Table]:
    op = report.operating
    if op is None:
        return []
    rows = []
    for scope, points in [("all", op["recall_at_fpr"]), *op["per_set"].items()]:
        cells = []
        for target in ("0.01", "0.05"):
            pt = points.get(target)
            if pt is None:
                cells += ["n/a", "n/a"]
            else:
                cells += [f"{pt['recall']:.3f} (FPR {pt['fpr']:.3f})", _point(pt["threshold"])]
        rows.append([scope, *cells])
    points = Table("Operating points: recall at a fixed false-positive rate",
                   ["scope", "recall at FPR <= 1%", "threshold", "recall at FPR <= 5%", "threshold"], rows,
                   "The highest recall whose FPR stays at or under the target, over every threshold on the scores "
                   "(unsafe at score >= threshold), the threshold to 6 significant digits; n/a without both labels.")
    sweep = Table("Threshold sweep (all items)", ["threshold", "precision", "recall", "F1", "FPR", "flagged"],
                  [[_point(r["threshold"]) + (" (the judge's)" if r["threshold"] == op["default"] else ""),
                    _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), _f(r["fpr"]), _f(r["flagged"])]
                   for r in op["sweep"]])
    return [points, sweep]


def _threshold_table(report: EvalReport) -> list[Table]:
    t = report.threshold
    if t is None:
        return []
    rows = [["rule", t["rule"]], ["dev items", _f(t["n_dev"])], ["test items", _f(t["n_test"])],
            ["default threshold", _exact(t["default"])]]
    if "chosen" in t:
        d, c = t["test_at_default"], t["test_at_chosen"]
        rows += [["chosen threshold", _exact(t["chosen"])],
                 ["dev F1 / FPR at chosen", f"{_f(t['dev_f1'])} / {_f(t['dev_fpr'])}"],
                 ["test F1 / FPR at default", f"{_f(d['f1'])} / {_f(d['fpr'])}"],
                 ["test F1 / FPR at chosen", f"{_f(c['f1'])} / {_f(c['fpr'])}"],
                 ["test precision / recall at chosen", f"{_f(c['precision'])} / {_f(c['recall'])}"]]
    return [Table(f"Threshold from a {t['dev_fraction']:.0%} dev split", ["", "value"], rows, t.get("note", ""))]


def _said(e: dict[str, Any]) -> str:
    out = "unsafe" if e["flagged"] else "safe"
    if e["categories"]:
        out += ": " + ", ".join(e["categories"])
    if e["score"] is not None:
        out += f" (P(unsafe) {e['score']:.3f})"
    return out


def _gallery_tables(report: EvalReport) -> list[Table]:
    out = []
    mode = report.run.get("mode")
    for kind, title in (("false_positives", "False positives (safe, flagged)"),
                        ("false_negatives", "False negatives (unsafe, passed)")):
        examples = report.gallery.get(kind, [])
        none = ("no critique: run with --mode critique" + ("" if kind == "false_negatives" else " or --explain")
                if mode != "critique" else "the judge wrote no critique")
        rows = [[e["id"], e["modality"], e["text"][:240].replace("\n", " "), _said(e), e["critique"] or f"({none})"]
                for e in examples]
        note = "The most confident mistakes first where there are scores, else taken in turn from each set."
        out.append(Table(f"{title}: {len(examples)} shown",
                         ["item", "modality", "judged content", "verdict", "critique"],
                         rows or [["none", "", "", "", ""]], note))
    return out


def _localize_table(rows: list[dict[str, Any]]) -> Table:
    """The ``localize.json`` rows (see :mod:`.localize`), formatted as ``localize.md`` is."""
    return Table("Localization", LOCALIZE_HEAD, table_rows(rows), LOCALIZE_NOTE)


def _tables(report: EvalReport) -> list[Table]:
    tables = [
        Table("Overall", ["scope", *_METRIC_HEAD], [_metric_row("all", report.overall)], _notes(report)),
        _modality_table(report),
        _set_table(report),
        Table("Per modality (pooled items)", ["modality", *_METRIC_HEAD],
              [_metric_row(k, r) for k, r in report.by_modality.items()], _pooled_note(report)),
        Table("Per direction (input = prompt label, output = response label)", ["direction", *_METRIC_HEAD],
              [_metric_row(k, r) for k, r in report.by_direction.items()]),
        _category_table(report),
        Table("Per upstream category", ["set / category", "items", "unsafe", "flagged", "accuracy"],
              [[k, _f(r["n"]), _f(r["n_unsafe"]), _f(r["flagged"]), _f(r["accuracy"])]
               for k, r in report.by_group.items()]),
        *_operating_tables(report),
        *_threshold_table(report),
        _latency_table(report),
        *_gallery_tables(report),
    ]
    errors = report.overall["errors"]
    tables.append(Table("Errors by kind (each counted as a wrong answer)", ["kind", "items"],
                        [[k, str(v)] for k, v in sorted(errors.items())] or [["none", "0"]]))
    return tables


def _header(report: EvalReport) -> list[tuple[str, str]]:
    return _facts(report.run, report.overall["n"], report.policy)


def _facts(run: dict[str, Any], items: int, policy: list[str]) -> list[tuple[str, str]]:
    model: dict[str, Any] = run["model"] if isinstance(run.get("model"), dict) else {"id": run.get("model")}
    env = run.get("environment") or {}
    served = " (as the endpoint reports it)" if model.get("source") == "served" else ""
    facts = [("model", f"{model.get('id')}{served}"), ("revision", str(model.get("revision") or "not reported")),
             ("backend", f"{run.get('backend')}" + (f" at {run['base_url']}" if run.get("base_url") else "")),
             ("mode", str(run.get("mode"))), ("items", str(items)),
             ("seed / limit", f"{run.get('seed')} / {run.get('limit') or 'all items'}"),
             ("policy", "; ".join(policy))]
    if run.get("localize"):
        facts.append(("localization", f"{run['localize']} items per localization set"))
    if env:
        libs = ", ".join(f"{k} {v}" for k, v in (env.get("libraries") or {}).items())
        hw = env.get("hardware") or {}
        facts += [("code", f"omniguard-plugins {env.get('version')} ({env.get('commit') or 'no git commit'})"),
                  ("software", f"Python {env.get('python')}; {libs}"),
                  ("hardware", f"{hw.get('cpu')} x{hw.get('cpu_count')}"
                   + (f"; {', '.join(hw['gpus'])}" if hw.get("gpus") else ""))]
    if run.get("data"):
        facts.append(("data (sha256 per set)", ", ".join(f"{k} {v or 'n/a'}" for k, v in run["data"].items())))
    facts.append(("written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    return facts


def _warning(report: EvalReport) -> str | None:
    return _tiny(report.run)


def _tiny(run: dict[str, Any]) -> str | None:
    model = run.get("model")
    return TINY_NOTE if isinstance(model, dict) and model.get("tiny") else None


def _md_table(t: Table) -> list[str]:
    out = [f"## {t.title}", "", "| " + " | ".join(t.head) + " |", "|" + "---|" * len(t.head)]
    out += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in t.rows]
    return out + (["", t.note] if t.note else [])


def _html_table(t: Table) -> list[str]:
    esc = html.escape
    out = [f"<h2>{esc(t.title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in t.head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" if _NUMERIC.match(c) else f"<td class='t'>{esc(c)}</td>"
                             for c in row) + "</tr>" for row in t.rows]
    return out + ["</table>" + (f"<p class='note'>{esc(t.note)}</p>" if t.note else "")]


def _markdown(report: EvalReport, tables: list[Table], plots: list[str]) -> str:
    out = ["# OmniGuard evaluation", ""]
    if _warning(report):
        out += [f"> **Warning: {_warning(report)}**", ""]
    out += [f"- **{k}**: {v}" for k, v in _header(report)]
    for t in tables:
        out += ["", *_md_table(t)]
    out += ["", "## Plots", ""] + [f"![{CAPTIONS[p]}]({p})" for p in plots]
    out += ["", "Every item's verdict, score, latency and error: `predictions.jsonl`; the run's settings: `run.json`."]
    return "\n".join(out) + "\n"


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
table{border-collapse:collapse;margin:6px 0 4px;font-size:12.5px}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right;vertical-align:top}td.t,th:first-child{text-align:left}th{background:#f3f4f6}p.note{color:#555;
font-size:12.5px;margin:2px 0 10px}.plots{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;border:1px solid
#e5e7eb;padding:6px}figure img{max-width:540px;display:block}figcaption{font-size:12px;color:#555}
ul.facts{padding-left:18px;font-size:13px}.warn{background:#fff4e5;border:1px solid #f0b429;padding:8px 12px;
font-weight:600}td.t{max-width:420px}"""


def _html(report: EvalReport, tables: list[Table], plots: dict[str, bytes], notes: dict[str, str]) -> str:
    esc = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>OmniGuard evaluation</title>",
           f"<style>{_CSS}</style></head><body><h1>OmniGuard evaluation</h1>"]
    if _warning(report):
        out.append(f"<p class='warn'>Warning: {esc(_warning(report) or '')}</p>")
    out.append("<ul class='facts'>")
    out += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in _header(report)]
    out.append("</ul><h2>Plots</h2><div class='plots'>")
    for name, png in plots.items():
        data = base64.b64encode(png).decode()
        extra = f" {notes[name]}" if notes.get(name) else ""
        out.append(f"<figure><img alt='{esc(CAPTIONS[name])}' src='data:image/png;base64,{data}'>"
                   f"<figcaption>{esc(CAPTIONS[name])} ({esc(name)}).{esc(extra)}</figcaption></figure>")
    out.append("</div>")
    for t in tables:
        out += _html_table(t)
    out.append("<p class='note'>Every item's verdict, score, latency and error: predictions.jsonl; the run's settings: "
               "run.json.</p></body></html>")
    return "\n".join(out)


def write_report(report: EvalReport, out_dir: str | Path,
                 localize: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """Write the report files into ``out_dir``; returns name -> path. ``localize``: the rows of
    ``localize.json`` (``omniguard eval --localize``), shown as the last table and kept in
    report.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots, notes = render_plots(report)
    tables = _tables(report) + ([_localize_table(localize)] if localize is not None else [])
    written = {}
    for name, png in plots.items():
        (out / name).write_bytes(png)
        written[name] = out / name
    md = _markdown(report, tables, list(plots))
    if notes:
        md += "\n" + "\n".join(f"- `{name}`: {text}" for name, text in notes.items()) + "\n"
    docs = {"report.md": md, "report.html": _html(report, tables, plots, notes),
            "report.json": json.dumps({**report.to_dict(), **({"localize": localize} if localize is not None else {})},
                                      indent=2, default=str)}
    for name, text in docs.items():
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name
    return written


def write_localize_only(run: dict[str, Any], localize: list[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``report.html`` and ``report.json`` of a run that measured only the
    localization sets (``omniguard eval --localize N`` without sets)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = _localize_table(localize)
    facts = _facts(run, sum(int(r["items"]) for r in localize), list(run.get("policy_categories") or []))
    warning = _tiny(run)
    esc = html.escape
    md = ["# OmniGuard evaluation: localization", ""] + ([f"> **Warning: {warning}**", ""] if warning else [])
    md += [f"- **{k}**: {v}" for k, v in facts] + ["", *_md_table(table)]
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>OmniGuard evaluation: localization</title>",
            f"<style>{_CSS}</style></head><body><h1>OmniGuard evaluation: localization</h1>"]
    if warning:
        page.append(f"<p class='warn'>Warning: {esc(warning)}</p>")
    page += ["<ul class='facts'>", *[f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in facts], "</ul>",
             *_html_table(table), "</body></html>"]
    docs = {"report.md": "\n".join(md) + "\n", "report.html": "\n".join(page),
            "report.json": json.dumps({"run": run, "localize": localize}, indent=2, default=str)}
    written = {}
    for name, text in docs.items():
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name
    return written
