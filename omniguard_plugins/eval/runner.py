"""Judge items in batches through the public ``check_many``, resumably.

Every batch's predictions are appended to ``predictions.jsonl`` as soon as it is judged, and a
run folder that already holds predictions for an item does not judge it again. ``run.json``
records what the predictions were made with; resuming under another mode or policy is refused,
since the two halves would not be one measurement.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..judge import OmniGuard
from ..policy import Policy
from .items import EvalItem
from .predictions import Prediction, read_predictions, write_lines
from .summary import EvalReport, summarize

__all__ = ["evaluate", "policy_fingerprint"]


def policy_fingerprint(policy: Policy) -> str:
    return hashlib.sha256(policy.render().encode()).hexdigest()[:16]


def _run_info(judge: OmniGuard, mode: str, policy: Policy) -> dict[str, Any]:
    config = judge.config
    return {"mode": mode, "policy": policy_fingerprint(policy), "policy_categories": [str(c) for c in policy],
            "model": config.model, "backend": config.resolved_backend, "base_url": config.base_url,
            "threshold": config.threshold, "on_error": config.on_error}


def _check_resume(out_dir: Path, info: dict[str, Any]) -> None:
    path = out_dir / "run.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    for key in ("mode", "policy", "model", "threshold"):
        if old.get(key) != info[key]:
            raise ConfigError(f"{out_dir} holds a run with {key}={old.get(key)!r}, not {info[key]!r}: "
                              "use another --out folder (or delete that one) to start afresh")


def _previous(out_dir: Path, info: dict[str, Any]) -> dict[str, Prediction]:
    """The predictions a run folder already holds (after checking it is the same kind of run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_resume(out_dir, info)
    path = out_dir / "predictions.jsonl"
    previous = read_predictions(path)
    if path.exists() and len(previous) != len(path.read_text(encoding="utf-8").splitlines()):
        path.write_text("".join(p.to_json() + "\n" for p in previous), encoding="utf-8")  # drop a torn line
    return {p.id: p for p in previous}


def evaluate(
    judge: OmniGuard,
    items: Sequence[EvalItem],
    *,
    out_dir: str | Path | None = None,
    mode: str | None = None,
    policy: Policy | None = None,
    batch_size: int = 32,
    dev_fraction: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Judge ``items`` and summarise: metrics overall and per dataset, modality, direction and
    category. ``dev_fraction`` (with scores) picks a threshold on a dev split and reports the
    rest at it. With ``out_dir`` the run is resumable and its predictions are kept there
    (``predictions.jsonl``, ``run.json``); ``report.predictions`` keeps the order of ``items``."""
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"item ids must be unique; {dup!r} appears twice")
    mode = mode or judge.config.mode
    policy = policy or judge.config.policy
    info = _run_info(judge, mode, policy)
    out = Path(out_dir) if out_dir is not None else None
    done = _previous(out, info) if out is not None else {}
    todo = [i for i in items if i.id not in done]
    if progress is not None and len(items) > len(todo):
        progress(len(items) - len(todo))
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        verdicts = judge.check_many([i.check_input(policy) for i in batch], mode=mode)  # type: ignore[arg-type]
        fresh = [Prediction.of(item, verdict) for item, verdict in zip(batch, verdicts)]
        done.update((p.id, p) for p in fresh)
        if out is not None:
            write_lines(out / "predictions.jsonl", fresh)
        if progress is not None:
            progress(len(batch))
    wall = time.perf_counter() - started
    info.update(items=len(items), judged_now=len(todo), resumed=len(items) - len(todo), batch_size=batch_size,
                wall_s=round(wall, 3), items_per_s=round(len(todo) / wall, 3) if todo and wall > 0 else None)
    if out is not None:
        (out / "run.json").write_text(json.dumps(info, indent=2))
    return summarize([done[i] for i in ids], policy=policy, dev_fraction=dev_fraction,
                     threshold=judge.config.threshold, run=info)
