"""Judge items through the public ``check_many``, resumably, and stoppable at once.

``run.json`` is written before the first item is judged and checked when a folder is resumed:
mode, policy, model (as served), seed, limit and the set list must match, or the run is
refused in one line. Every batch's predictions are appended to ``predictions.jsonl`` as soon as
it is judged; an interrupt (Ctrl-C) stops the run at once and the batch in flight is not
written. Rows that failed for a reason outside the model (an interrupt, overload, a backend that
was down) are judged again on resume; ``retry_errors=True`` judges every failed row again.

Batches never span two sets, so a set's timing is its own; ``latency_sample`` items (spread over
the sets) are judged one at a time first, which gives per-item latency without batch waits.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..doors import Ask
from ..errors import ConfigError
from ..judge import OmniGuard
from ..policy import Policy
from ..verdict import Verdict
from .items import EvalItem
from .predictions import Prediction, read_predictions, rewrite_predictions, write_lines
from .runinfo import check_same_run, data_checksums, environment, model_identity, served_models
from .summary import EvalReport, summarize

__all__ = ["check_many_interruptible", "evaluate", "finish_localize_run", "policy_fingerprint", "start_localize_run"]


def policy_fingerprint(policy: Policy) -> str:
    return hashlib.sha256(policy.render().encode()).hexdigest()[:16]


def _identity(judge: OmniGuard) -> dict[str, Any]:
    config = judge.config
    served = served_models(config.base_url, config.api_key) if config.base_url else None
    identity = model_identity(config, served, chosen=config.model)
    identity["backend_id"] = getattr(judge.backend, "model_id", None)
    return identity


def _run_info(judge: OmniGuard, mode: str, policy: Policy, items: Sequence[EvalItem], *, seed: int | None,
              limit: int | None, folders: Mapping[str, Path | None] | None, explain: bool | None,
              localize: int | None = None) -> dict[str, Any]:
    config = judge.config
    return {"mode": mode, "policy": policy_fingerprint(policy), "policy_categories": [str(c) for c in policy],
            "model": _identity(judge), "backend": config.resolved_backend, "base_url": config.base_url,
            "threshold": config.threshold, "on_error": config.on_error, "explain": explain, "seed": seed,
            "limit": limit, "sets": list(dict.fromkeys(i.dataset for i in items)), "localize": localize,
            "data": data_checksums(folders or {}), "environment": environment(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _previous(out: Path, info: dict[str, Any], retry_errors: bool) -> tuple[dict[str, Prediction], int]:
    """The predictions a run folder already holds (after checking it is the same run), less the
    rows to judge again; the file is rewritten without those (and without a torn line)."""
    out.mkdir(parents=True, exist_ok=True)
    check_same_run(out / "run.json", info)
    path = out / "predictions.jsonl"
    previous = read_predictions(path)
    keep = [p for p in previous if not (p.error and (retry_errors or p.outside_model))]
    if path.exists() and len(keep) != len(path.read_text(encoding="utf-8").splitlines()):
        rewrite_predictions(path, keep)
    return {p.id: p for p in keep}, len(previous) - len(keep)


def _write_run(out: Path | None, info: Mapping[str, Any]) -> None:
    if out is None:
        return
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    tmp.replace(out / "run.json")


def check_many_interruptible(judge: OmniGuard, asks: list[Ask], mode: str) -> list[Verdict]:
    """``check_many`` in a worker thread, waited for in short slices: Ctrl-C lands in this
    (main) thread and stops the run at once, instead of inside the judge's own wait, where it
    would be taken for a failed check."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["verdicts"] = judge.check_many(asks, mode=mode)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="omniguard-eval-batch", daemon=True).start()
    while not done.wait(0.2):
        pass
    if "error" in box:
        raise box["error"]
    return box["verdicts"]


def _plan(todo: Sequence[EvalItem], batch_size: int, latency_sample: int) -> list[list[EvalItem]]:
    """Batches: first ``latency_sample`` single items taken in turn from each set, then each
    set's remaining items in batches of ``batch_size`` (a batch never spans two sets)."""
    by_set: dict[str, list[EvalItem]] = {}
    for item in todo:
        by_set.setdefault(item.dataset, []).append(item)
    singles: list[EvalItem] = []
    queues = [list(v) for v in by_set.values()]
    while len(singles) < latency_sample and any(queues):
        for q in queues:
            if q and len(singles) < latency_sample:
                singles.append(q.pop(0))
    picked = {i.id for i in singles}
    plan = [[i] for i in singles]
    for items in by_set.values():
        rest = [i for i in items if i.id not in picked]
        plan += [rest[k:k + batch_size] for k in range(0, len(rest), batch_size)]
    return plan


def evaluate(
    judge: OmniGuard,
    items: Sequence[EvalItem],
    *,
    out_dir: str | Path | None = None,
    mode: str | None = None,
    policy: Policy | None = None,
    batch_size: int = 32,
    dev_fraction: float | None = None,
    max_fpr: float = 0.05,
    progress: Callable[[int], None] | None = None,
    seed: int | None = None,
    limit: int | None = None,
    retry_errors: bool = False,
    latency_sample: int = 0,
    explain: bool | None = None,
    folders: Mapping[str, Path | None] | None = None,
    localize: int | None = None,
) -> EvalReport:
    """Judge ``items`` and summarise: metrics overall and per dataset, modality, direction and
    category, with bootstrap intervals (seeded by ``seed``). ``dev_fraction`` (with scores)
    picks a threshold on a dev split (max F1 with a dev FPR of at most ``max_fpr``) and reports
    the rest at it. With ``out_dir`` the run is resumable and its predictions are kept there
    (``predictions.jsonl``, ``run.json``); ``report.predictions`` keeps the order of ``items``.
    ``seed``, ``limit`` and ``folders`` (set -> data folder, for checksums) are recorded in
    ``run.json``, and so is ``localize`` (items per localization set, when the run also measures
    the evidence). ``explain=True`` asks a critique for every flagged item (the error gallery).
    KeyboardInterrupt stops at once; the batch in flight is not written."""
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"item ids must be unique; {dup!r} appears twice")
    mode = mode or judge.config.mode
    policy = policy or judge.config.policy
    info = _run_info(judge, mode, policy, items, seed=seed, limit=limit, folders=folders, explain=explain,
                     localize=localize)
    out = Path(out_dir) if out_dir is not None else None
    done, retried = _previous(out, info, retry_errors) if out is not None else ({}, 0)
    todo = [i for i in items if i.id not in done]
    info.update(status="running", items=len(items), resumed=len(items) - len(todo), judged_again=retried,
                judged_now=0, batch_size=batch_size, latency_sample=latency_sample)
    _write_run(out, info)
    if progress is not None and len(items) > len(todo):
        getattr(progress, "skip", progress)(len(items) - len(todo))
    session = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    started = time.perf_counter()
    judged = 0
    try:
        for n, batch in enumerate(_plan(todo, batch_size, latency_sample)):
            asks = [Ask(conversation=i.conversation(), stage=i.direction, policy=policy, explain=explain)
                    for i in batch]
            t0 = time.perf_counter()
            verdicts = check_many_interruptible(judge, asks, mode)
            wall_ms = round((time.perf_counter() - t0) * 1000.0, 3)
            meta = {"id": f"{session}-{n}", "size": len(batch), "wall_ms": wall_ms}
            fresh = [Prediction.of(item, verdict, batch=meta) for item, verdict in zip(batch, verdicts)]
            done.update((p.id, p) for p in fresh)
            if out is not None:
                write_lines(out / "predictions.jsonl", fresh)
            judged += len(batch)
            if progress is not None:
                progress(len(batch))
    except KeyboardInterrupt:
        info.update(status="interrupted", judged_now=judged, wall_s=round(time.perf_counter() - started, 3))
        _write_run(out, info)
        raise
    info.update(status="complete", judged_now=judged, wall_s=round(time.perf_counter() - started, 3),
                finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write_run(out, info)
    return summarize([done[i] for i in ids], policy=policy, dev_fraction=dev_fraction, max_fpr=max_fpr,
                     threshold=judge.config.threshold, run=info, seed=seed or 0)


def start_localize_run(judge: OmniGuard, out_dir: str | Path, *, localize: int, mode: str | None = None,
                       seed: int | None = None) -> dict[str, Any]:
    """``run.json`` for a run that measures only the localization sets (``--localize`` without
    sets): checked against a folder's earlier run like any other (a different ``localize`` or
    seed is refused), written before anything is judged; returns the record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = _run_info(judge, mode or judge.config.mode, judge.config.policy, [], seed=seed, limit=None, folders=None,
                     explain=None, localize=localize)
    check_same_run(out / "run.json", info)
    info.update(status="running")
    _write_run(out, info)
    return info


def finish_localize_run(out_dir: str | Path, info: dict[str, Any], status: str = "complete") -> None:
    """Mark a localization-only run ``complete`` (or ``interrupted``) in its ``run.json``."""
    info.update(status=status, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write_run(Path(out_dir), info)
