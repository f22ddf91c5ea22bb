"""``omniguard eval`` and ``omniguard policy test``."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from ..errors import OmniGuardError
from .progress import Progress

__all__ = ["eval_command", "policy_group"]

_MODES = click.Choice(["verdict", "score", "critique"])


def _judge_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--model", envvar="OMNIGUARD_MODEL", default=None,
                     help="Checkpoint id or folder [env OMNIGUARD_MODEL]."),
        click.option("--url", envvar="OMNIGUARD_URL", default=None,
                     help="OpenAI-compatible judge endpoint(s): omniguard serve or vLLM [env OMNIGUARD_URL]."),
        click.option("--device", envvar="OMNIGUARD_DEVICE", default=None, help="auto, cpu, cuda, cuda:1 ..."),
        click.option("--mode", type=_MODES, default=None,
                     help="verdict (default), score (P(unsafe), one pass) or critique (no scores)."),
        click.option("--data-root", type=click.Path(file_okay=False), envvar="OMNIGUARD_DATA_ROOT", default=None,
                     help="Folder of the benchmark sets [env OMNIGUARD_DATA_ROOT; default ../shared/data/benchmarks "
                          "beside the checkout where it exists, else the --download cache]."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="At most N items per set (a label-stratified, seeded sample)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit sample."),
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Items per check_many call."),
    ]):
        fn = option(fn)
    return fn


def _judge(model: str | None, url: str | None, device: str | None) -> Any:
    """The judge to measure. With ``--url`` and no ``--model``, the model the endpoint serves
    (its ``/v1/models``), so the requests and the report name it, not a client default."""
    from ..judge import OmniGuard

    if url and not model:
        from ..config import JudgeConfig
        from .runinfo import model_identity, served_models

        config = JudgeConfig.load(base_url=url)
        model = model_identity(config, served_models(url, config.api_key))["id"]
    return OmniGuard(model=model, base_url=url, device=device).load()


def _policy(path: str) -> Any:
    from ..policy import Policy

    if not Path(path).is_file():
        raise click.BadParameter(f"no such policy file: {path}", param_hint="policy")
    return Policy.from_yaml(Path(path))


def _load_items(names: Sequence[str], data_root: str | None, limit: int | None,
                seed: int) -> tuple[list[Any], dict[str, Path | None]]:
    """The items, and each set's data folder (for the run's checksums). Making derived media
    prints a progress line every few seconds."""
    from .datasets import DATASETS, dataset_folder, load_dataset

    if list(names) == ["all"]:
        names = [n for n, info in DATASETS.items() if info.available()]
        missing = [n for n, info in DATASETS.items() if not info.available()]
        if missing:
            click.echo(f"skipping {', '.join(missing)}: espeak-ng is not installed", err=True)
    items: list[Any] = []
    folders: dict[str, Path | None] = {}
    last = [time.monotonic()]

    def media(name: str) -> Any:
        def tick(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 5.0 or done == total:
                last[0] = time.monotonic()
                click.echo(f"making media for {name}: {done}/{total} items", err=True)
        return tick

    for name in names:
        loaded = load_dataset(name, data_root, limit=limit, seed=seed, progress=media(name))
        items += loaded
        folder = dataset_folder(name, data_root)
        for dataset in dict.fromkeys(i.dataset for i in loaded):
            folders[dataset] = folder
    return items, folders


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _summary_line(overall: dict[str, Any]) -> str:
    auprc = "" if overall["auprc"] is None else f"  AUPRC {overall['auprc']:.3f}"
    return (f"{overall['n']} items  precision {_f(overall['precision'])}  recall {_f(overall['recall'])}  "
            f"F1 {_f(overall['f1'])}  FPR {_f(overall['fpr'])}{auprc}  errors {overall['n_errors']}")


def _interrupted(out: str) -> NoReturn:
    """Exit 130 now. The predictions and run.json are already on disk; the batch in flight may
    still be inside the model in a worker thread, and a normal interpreter exit would wait for
    it (or abort in native code, as torch does), so the process ends here."""
    click.echo(f"\ninterrupted: the batch in flight was not written; run the same command to resume ({out})",
               err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _list_sets() -> None:
    from .datasets import DATASETS

    for name, info in DATASETS.items():
        state = "" if info.available() else f"  (needs {info.needs})"
        click.echo(f"{name:28s} {info.modality:12s} {info.labelled:9s} {info.description}{state}")


def _localize_rows(judge: Any, out: str, per_set: int, seed: int, mode: str | None) -> list[dict[str, Any]]:
    """Judge the localization sets (in ``mode``, Ctrl-C stopping at once as in the main run) and
    write localize.md/localize.json, or, on a resumed run (run.json already checked: same
    settings), read the localize.json it left."""
    import json

    from .localize import LOCALIZE_SETS, write_localize_report
    from .runner import check_many_interruptible

    done = Path(out) / "localize.json"
    if done.is_file():
        try:
            rows: list[dict[str, Any]] = json.loads(done.read_text(encoding="utf-8"))
            return rows
        except ValueError:
            pass  # torn by a crash: judge again
    progress = Progress(per_set * len(LOCALIZE_SETS), "localizing")
    write_localize_report(judge, out, per_set=per_set, seed=seed, progress=progress,
                          check=lambda asks: check_many_interruptible(judge, asks, mode or judge.config.mode))
    progress.close()
    return list(json.loads(done.read_text(encoding="utf-8")))


def _localize_lines(rows: list[dict[str, Any]]) -> str:
    """One line per localization set, the table's numbers."""
    from .localize import LOCALIZE_HEAD, table_rows

    lines = []
    for cells in table_rows(rows):
        said = ", ".join(f"{h} {c}" for h, c in zip(LOCALIZE_HEAD[1:], cells[1:]) if c)
        lines.append(f"localization {cells[0]}: {cells[1] if cells[1].startswith('skipped') else said}")
    return "\n".join(lines)


def _localize_only(out: str, model: str | None, url: str | None, device: str | None, mode: str | None, seed: int,
                   per_set: int) -> None:
    """``omniguard eval --localize N`` without sets: only the localization sets."""
    from .render import write_localize_only
    from .runinfo import TINY_NOTE
    from .runner import finish_localize_run, start_localize_run

    judge = _judge(model, url, device)
    info = start_localize_run(judge, out, localize=per_set, mode=mode, seed=seed)
    try:
        rows = _localize_rows(judge, out, per_set, seed, mode)
    except KeyboardInterrupt:
        finish_localize_run(out, info, status="interrupted")
        _interrupted(out)
    judge.close()
    finish_localize_run(out, info)
    written = write_localize_only(info, rows, out)
    click.echo(_localize_lines(rows))
    if (info.get("model") or {}).get("tiny"):
        click.echo(f"warning: {TINY_NOTE}", err=True)
    click.echo(f"wrote {', '.join(sorted(written))}, localize.md and localize.json to {out}")


def _download(names: str, root: str | None) -> str:
    """``--download``: fetch the sets, a line for each; a failed fetch (offline, a missing file)
    or a set to get by hand ends the command with one line naming it. Returns the folder."""
    from .download import cache_root, download_sets

    base = root or str(cache_root())
    _, by_hand, failed = download_sets([names], base, say=click.echo)
    if failed:
        raise click.ClickException("; ".join(failed))
    if by_hand:
        raise click.ClickException(f"not downloaded: {', '.join(by_hand)} (get them by hand as said above)")
    return base


@click.command("eval")
@click.argument("sets", nargs=-1)
@_judge_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: omniguard-eval]; a folder with predictions is resumed (its items are not "
                   "judged again). With --compare: where compare.md goes.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="YAML policy to judge under (default: S1-S12).")
@click.option("--dev-split", type=click.FloatRange(0.05, 0.95), default=None,
              help="Choose a threshold on this share of the items (max F1 with a dev FPR of at most --max-fpr), "
                   "report the rest at it (needs scores).")
@click.option("--max-fpr", type=click.FloatRange(0.0, 1.0), default=0.05, show_default=True,
              help="The false-positive-rate cap of the --dev-split rule.")
@click.option("--retry-errors", is_flag=True,
              help="On resume, judge every failed row again (rows failed by an interrupt, overload or a backend "
                   "that was down are always judged again).")
@click.option("--latency-sample", type=click.IntRange(min=0), default=24, show_default=True,
              help="Items judged one at a time first, for per-item latency without batch waits (0: none).")
@click.option("--explain", is_flag=True, help="Ask a critique for every flagged item (the error gallery shows it).")
@click.option("--compare", nargs=2, type=click.Path(), default=None, metavar="RUN_A RUN_B",
              help="Compare two run folders instead of judging: setting differences, metric changes with paired "
                   "tests, flipped items.")
@click.option("--localize", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also measure the evidence (where the harm is) on the derived localization sets, N items each: "
                   "hit rate, mean IoU, extra checks per unsafe verdict. Without sets: only those.")
@click.option("--download", default=None, metavar="SETS",
              help="Fetch these public sets (comma list, or all) through the Hugging Face hub client into "
                   "--data-root, default the per-user cache [env OMNIGUARD_EVAL_DATA; default "
                   "~/.cache/omniguard-plugins/benchmarks]; a set not on the hub says where to get it by hand. "
                   "With sets named, they are then evaluated from there.")
@click.option("--list", "list_sets", is_flag=True, help="List the sets and exit.")
def eval_command(sets: tuple[str, ...], model: str | None, url: str | None, device: str | None, mode: str | None,
                 data_root: str | None, limit: int | None, seed: int, batch_size: int, out: str | None,
                 policy_file: str | None, dev_split: float | None, max_fpr: float, retry_errors: bool,
                 latency_sample: int, explain: bool, compare: tuple[str, str] | None, localize: int | None,
                 download: str | None, list_sets: bool) -> None:
    """Measure the judge on labelled sets (names from --list, 'all', or golden-set files).

    Writes report.md, report.html, report.json, predictions.jsonl, run.json and PNG plots into
    --out (with --localize also localize.md and localize.json). Ctrl-C stops at once (exit 130);
    the same command resumes.
    """
    from .compare import compare_runs
    from .render import write_report
    from .runner import evaluate

    if list_sets:
        _list_sets()
        return
    try:
        if download is not None:
            data_root = _download(download, data_root)
            if not sets and localize is None:
                return
        if compare:
            comparison = compare_runs(*compare)
            text = comparison.to_markdown()
            click.echo(text)
            if out is not None:
                Path(out).mkdir(parents=True, exist_ok=True)
                (Path(out) / "compare.md").write_text(text, encoding="utf-8")
            return
        if not sets and localize is None:
            raise click.UsageError("name the sets to evaluate (see --list), 'all', or golden-set files")
        out = out or "omniguard-eval"
        if not sets:
            _localize_only(out, model, url, device, mode, seed, localize or 0)
            return
        policy = _policy(policy_file) if policy_file else None
        items, folders = _load_items(sets, data_root, limit, seed)
        judge = _judge(model, url, device)
        progress = Progress(len(items), "judging")
        try:
            report = evaluate(judge, items, out_dir=out, mode=mode, policy=policy, batch_size=batch_size,
                              dev_fraction=dev_split, max_fpr=max_fpr, progress=progress, seed=seed, limit=limit,
                              retry_errors=retry_errors, latency_sample=latency_sample, explain=explain or None,
                              folders=folders, localize=localize)
            progress.close()
            rows = _localize_rows(judge, out, localize, seed, mode) if localize else None
        except KeyboardInterrupt:
            _interrupted(out)  # the judge is not closed: that would wait for the batch in flight
        judge.close()
        written = write_report(report, out, localize=rows)
    except KeyboardInterrupt:
        _interrupted(out or "omniguard-eval")
    except OmniGuardError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo(_summary_line(report.overall))
    if rows is not None:
        click.echo(_localize_lines(rows))
    if (report.run.get("model") or {}).get("tiny"):
        from .runinfo import TINY_NOTE

        click.echo(f"warning: {TINY_NOTE}", err=True)
    t = report.threshold
    if t is not None:
        if "chosen" in t:
            click.echo(f"threshold chosen on the dev split ({t['rule']}): {float(t['chosen'])!r}, dev FPR "
                       f"{_f(t['dev_fpr'])}; on the test split FPR {_f(t['test_at_chosen']['fpr'])}, "
                       f"F1 {_f(t['test_at_chosen']['f1'])}")
        else:
            click.echo(f"no threshold chosen: {t.get('note')}")
    click.echo(f"wrote {', '.join(sorted(written))} and predictions.jsonl to {out}")


@click.group("policy")
def policy_group() -> None:
    """Work with safety policies."""


@policy_group.command("test")
@click.argument("policy_file", type=click.Path(dir_okay=False))
@click.argument("golden", nargs=-1, required=True)
@_judge_options
@click.option("--out", type=click.Path(file_okay=False), default="omniguard-policy-test", show_default=True,
              help="Folder for the custom/ and default/ runs and compare.md (resumable).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also judge under the default policy and list the flipped items.")
def policy_test_command(policy_file: str, golden: tuple[str, ...], model: str | None, url: str | None,
                        device: str | None, mode: str | None, data_root: str | None, limit: int | None, seed: int,
                        batch_size: int, out: str, baseline: bool) -> None:
    """Evaluate POLICY_FILE (YAML) on GOLDEN sets (golden-set files or set names)."""
    from .policy_test import policy_test
    from .render import write_report

    try:
        policy = _policy(policy_file)
        items, _ = _load_items(golden, data_root, limit, seed)
        judge = _judge(model, url, device)
        progress = Progress(len(items) * (2 if baseline else 1), "judging")
        try:
            result = policy_test(judge, policy, items, out_dir=out, baseline=baseline, mode=mode,
                                 batch_size=batch_size, progress=progress, seed=seed, limit=limit)
        except KeyboardInterrupt:
            _interrupted(out)
        judge.close()
        progress.close()
        write_report(result.custom, Path(out) / "custom")
        if result.default is not None:
            write_report(result.default, Path(out) / "default")
    except OmniGuardError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo("custom policy:  " + _summary_line(result.custom.overall))
    for label, row in result.custom.by_category.items():
        click.echo(f"  {label:40s} items {row['n']:4d}  recall {_f(row['recall'])}  named F1 {_f(row['f1_named'])}")
    if result.comparison is not None and result.default is not None:
        click.echo("default policy: " + _summary_line(result.default.overall))
        text = result.comparison.to_markdown()
        (Path(out) / "compare.md").write_text(text, encoding="utf-8")
        click.echo(f"{len(result.comparison.broken)} items right under the default policy and wrong under yours, "
                   f"{len(result.comparison.fixed)} the other way round: {Path(out) / 'compare.md'}")
    click.echo(f"reports in {Path(out) / 'custom'}" + (f" and {Path(out) / 'default'}" if baseline else ""))
