"""``omniguard bench``: throughput, latency and the ratios to the naive loop and the prefill floor."""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from ..backends.transformers.fast_paths import SWITCHES

__all__ = ["bench"]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("bench")
@click.option("--model", envvar="OMNIGUARD_MODEL", default=None,
              help="Checkpoint folder; default: the tiny checkpoint.")
@click.option("--random-weights", is_flag=True, help="Build a full-size thinker with random weights (no download).")
@click.option("--arch", type=click.Choice(["omniguard-7b", "omniguard-3b", "small-cpu"]), default="omniguard-7b",
              help="Shape of the random-weight thinker; small-cpu keeps real prompt lengths at CPU cost.")
@click.option("--device", default="auto")
@click.option("--workloads", default="text,image", help="Comma list of text,image,audio,video,mixed.")
@click.option("--modes", default="verdict,score,critique", help="Comma list of verdict,score,critique,explain.")
@click.option("--concurrency", default="1,32", help="Comma list of client counts.")
@click.option("--requests", "n_requests", default=64, type=int,
              help="Checks per measurement (x concurrency/32 at most).")
@click.option("--naive/--no-naive", default=True, help="Also run the authors' loop: batch 1, full 256-token critique.")
@click.option("--naive-requests", default=2, type=int)
@click.option("--unsafe-share", default=0.0, type=click.FloatRange(0, 1),
              help="Share of checks whose text is an unsafe request (what explain_unsafe explains).")
@click.option("--distinct-media", default=16, type=int,
              help="Media repeat every this many checks (as a conversation's image is re-judged each turn).")
@click.option("--max-batch", default=32, type=int)
@click.option("--critique-tokens", default=256, type=int)
@click.option("--with", "enable", default="",
              help="Comma list of fast paths to turn on for the whole run (decode-graphs is off by default).")
@click.option("--without", "ablate", default="",
              help=f"Comma list of fast paths ({', '.join(SWITCHES)}) to also measure turned off, "
                   "each row in the same run.")
@click.option("--budget-s", default=0.0, type=float,
              help="Skip measurements once this many seconds have passed (0: no limit).")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False), default=None,
              help="Write the run as a bench/RESULTS.md section (card, date, table, ratios).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write all results as JSON.")
def bench(model: str | None, random_weights: bool, arch: str, device: str, workloads: str, modes: str,
          concurrency: str, n_requests: int, naive: bool, naive_requests: int, unsafe_share: float,
          distinct_media: int, max_batch: int,
          critique_tokens: int, enable: str, ablate: str, budget_s: float, markdown_out: str | None,
          json_out: str | None) -> None:
    """Measure the judge. On the CPU use the ratios only; absolute numbers come from a GPU."""
    from ..backends.transformers import BenchKnobs, FastPaths, TransformersBackend
    from ..backends.transformers.loading import resolve_device
    from .harness import HEADER, make_checks, matmul_tflops, run_bench

    for option, value in (("--with", enable), ("--without", ablate)):
        unknown = set(_csv(value)) - set(SWITCHES)
        if unknown:
            raise click.BadParameter(f"unknown fast path(s) {', '.join(sorted(unknown))}; one of {', '.join(SWITCHES)}",
                                     param_hint=option)
    started = time.perf_counter()
    dev = resolve_device(device)
    paths = FastPaths().resolved(dev)
    for path in _csv(enable):
        paths = paths.switched(path, True)
    t0 = time.perf_counter()
    if random_weights:
        from .random_model import build_random_backend

        backend = build_random_backend(arch, device=dev, fast_paths=paths, knobs=BenchKnobs.random_weights())
        label_model = f"random {arch}"
    else:
        if model is None:
            from ..testing import tiny_checkpoint

            model = str(tiny_checkpoint())
            label_model = "tiny checkpoint"
        else:
            label_model = model
        backend = TransformersBackend.from_pretrained(model, device=dev, fast_paths=paths)
    load_s = time.perf_counter() - t0
    paths_on = {path: paths.is_on(path) for path in SWITCHES}
    click.echo(f"# fast paths on: {', '.join(p for p, on in paths_on.items() if on) or 'none'}")
    ablations = [p for p in _csv(ablate) if paths_on[p]]
    for path in sorted(set(_csv(ablate)) - set(ablations)):
        click.echo(f"# --without {path}: already off in this run (--with {path} turns it on); not measured")
    click.echo(f"# model: {label_model} ({backend.parameter_count / 1e9:.2f}B params, loaded in {load_s:.1f}s)"
               f" on {_device_name(dev)}")
    tflops = matmul_tflops(dev)
    if tflops:
        click.echo(f"# measured bf16 matmul: {tflops:.0f} TFLOP/s")
    click.echo(HEADER)
    results: list[Any] = []

    def over_budget() -> bool:
        return bool(budget_s) and time.perf_counter() - started > budget_s

    for workload in _csv(workloads):
        checks_cache: dict[int, list[dict[str, Any]]] = {}

        def checks(n: int, workload: str = workload,
                   checks_cache: dict[int, list[dict[str, Any]]] = checks_cache) -> list[dict[str, Any]]:
            if n not in checks_cache:
                checks_cache[n] = make_checks(workload, n + 1, unsafe_share=unsafe_share, distinct=distinct_media)
            return checks_cache[n]

        if naive and not over_budget():
            results.append(run_bench(backend, checks(naive_requests), label="naive (authors' loop)", workload=workload,
                                     mode="critique", concurrency=1, max_batch=1, max_new_tokens=critique_tokens,
                                     on_progress=click.echo))
        for mode in _csv(modes):
            for conc in [int(c) for c in _csv(concurrency)]:
                if mode == "critique" and conc == 1 and naive:
                    continue  # the naive run is batch-1 critique already
                if over_budget():
                    click.echo(f"# skipped {workload}/{mode}/c{conc}: over --budget-s")
                    continue
                n = max(conc, min(n_requests, n_requests if conc > 1 else max(4, n_requests // 8)))
                real_mode = "verdict" if mode == "explain" else mode
                for off in [*ablations, None]:
                    row_backend = backend.variant(fast_paths=paths.switched(off, False)) if off else backend
                    label = f"{label_model[:18]}{f' -{off}' if off else ''}"
                    results.append(run_bench(row_backend, checks(n), label=label[:28], workload=workload,
                                             mode=real_mode, concurrency=conc, max_batch=max_batch,
                                             max_new_tokens=critique_tokens, explain_unsafe=mode == "explain",
                                             on_progress=click.echo))
                    results[-1].extra["without"] = off
    _compute_ratios(results, tflops, backend)
    _print_ratios(results)
    if markdown_out:
        Path(markdown_out).write_text(_markdown(results, device=_device_name(dev), model=label_model, tflops=tflops,
                                                paths_on=paths_on))
    if json_out:
        payload = {"date": datetime.now(timezone.utc).isoformat(), "device": _device_name(dev), "model": label_model,
                   "params": backend.parameter_count, "matmul_tflops": tflops, "host": platform.node(),
                   "results": [r.to_dict() for r in results]}
        Path(json_out).write_text(json.dumps(payload, indent=2))


def _device_name(dev: str) -> str:
    if dev.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(dev))
    return f"CPU ({platform.processor() or platform.machine()})"


def _compute_ratios(results: list[Any], tflops: float | None, backend: Any) -> None:
    """Fill each row's ``extra`` with its ratios to the naive run, to the prefill floor, and to
    the same row with each fast path off (all from this run)."""
    naive = {r.workload: r for r in results if r.label.startswith("naive")}
    llm_params = sum(p.numel() for n, p in backend.model.named_parameters()
                     if "visual" not in n and "audio_tower" not in n)
    for r in results:
        if r.label.startswith("naive"):
            continue
        if not r.extra.get("without"):
            r.extra["x_from"] = {
                other.extra["without"]: r.req_s / other.req_s for other in results
                if other.extra.get("without") and other.req_s
                and (other.workload, other.mode, other.concurrency) == (r.workload, r.mode, r.concurrency)
            }
        if r.workload in naive and naive[r.workload].req_s:
            r.extra["x_naive"] = r.req_s / naive[r.workload].req_s
        if tflops and r.extra.get("prompt_tokens"):
            r.extra["prefill_floor_req_s"] = tflops * 1e12 / (2 * llm_params * r.extra["prompt_tokens"])


def _print_ratios(results: list[Any]) -> None:
    click.echo("\n# ratios (same run)")
    for r in results:
        if r.label.startswith("naive"):
            continue
        off = r.extra.get("without")
        parts = [f"{r.workload}/{r.mode}/c{r.concurrency}{f' without {off}' if off else ''}: {r.req_s:.3f} req/s"]
        parts += [f"x{x:.2f} from {path}" for path, x in r.extra.get("x_from", {}).items()]
        if "x_naive" in r.extra:
            parts.append(f"x{r.extra['x_naive']:.1f} vs naive")
        if "prefill_floor_req_s" in r.extra:
            floor = r.extra["prefill_floor_req_s"]
            parts.append(f"{r.req_s / floor:.0%} of the prefill floor"
                         f" ({floor:.0f} req/s at {r.extra['prompt_tokens']:.0f} tokens)")
        if off != "prefix-cache" and r.extra.get("computed_tokens") and r.extra.get("prompt_tokens"):
            parts.append(f"prefilled {r.extra['computed_tokens']:.0f} of {r.extra['prompt_tokens']:.0f} prompt tokens")
        click.echo("  " + ", ".join(parts))


def _markdown(results: list[Any], *, device: str, model: str, tflops: float | None, paths_on: dict[str, bool]) -> str:
    """The run as a section for bench/RESULTS.md: card, date, one table, the ratios in it."""
    import torch
    import transformers

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {date}, {device}", "",
        f"`omniguard bench`, {model}, torch {torch.__version__}, transformers {transformers.__version__}"
        + (f", measured bf16 matmul {tflops:.0f} TFLOP/s" if tflops else "")
        + f"; fast paths on: {', '.join(p for p, on in paths_on.items() if on) or 'none'}.", "",
        "| workload | mode | conc | without | req/s | p50 ms | p95 ms | gen tok/s | batch | GPU GB | x naive"
        " | % prefill floor | x from each path |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        floor = r.extra.get("prefill_floor_req_s")
        cells = [
            r.workload, ("naive " if r.label.startswith("naive") else "") + r.mode, str(r.concurrency),
            r.extra.get("without") or "", f"{r.req_s:.2f}", f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}", f"{r.gen_tok_s:.0f}",
            f"{r.mean_batch:.1f}", "" if r.gpu_mem_gb is None else f"{r.gpu_mem_gb:.1f}",
            f"{r.extra['x_naive']:.1f}" if "x_naive" in r.extra else "",
            f"{r.req_s / floor:.0%}" if floor else "",
            ", ".join(f"{path} x{x:.2f}" for path, x in r.extra.get("x_from", {}).items()),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
