"""Ctrl-C stops ``omniguard eval`` at once: a real process is sent SIGINT mid-run; it exits 130,
the batch in flight is not written, no row holds an interrupt, and the same command resumes
and finishes. Rows an older version wrote for an interrupt are judged again on resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omniguard_plugins import Text
from omniguard_plugins.eval import EvalItem, evaluate, read_predictions
from omniguard_plugins.testing import scripted_judge

#: ``omniguard eval`` on a scripted judge, run as a script in its own process
SCRIPTED_EVAL = Path(__file__).resolve().parents[1] / "support" / "scripted_eval.py"
BATCH = 8
ITEMS = 48


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _interrupt_mid_run(cmd: list[str], out: Path, env: dict[str, str], *, start_timeout_s: float) -> tuple[int, str]:
    """Start ``cmd``, wait for its first batch to land, send SIGINT, return (exit code, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + start_timeout_s
        while len(_lines(out / "predictions.jsonl")) < BATCH:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run wrote no batch"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # a safety net, not a speed assertion
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def _check_interrupted(out: Path, err: str, rc: int) -> list[dict]:
    assert rc == 130, err
    assert "interrupted: the batch in flight was not written" in err and "Traceback" not in err
    rows = _lines(out / "predictions.jsonl")
    assert BATCH <= len(rows) < ITEMS, len(rows)
    assert all(r["verdict"]["error"] is None for r in rows), [r["verdict"]["error"] for r in rows]
    assert len({r["id"] for r in rows}) == len(rows)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["judged_now"] == len(rows)
    return rows


def test_sigint_stops_a_scripted_run_and_the_same_command_resumes(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPTED_EVAL), "eval", "xstest", "--limit", str(ITEMS), "--batch-size",
           str(BATCH), "--latency-sample", "0", "--data-root", str(data_root), "--out", str(out)]
    env = {**os.environ, "SCRIPTED_DELAY_S": "0.5"}
    rc, err = _interrupt_mid_run(cmd, out, env, start_timeout_s=60)
    rows = _check_interrupted(out, err, rc)
    assert len(rows) % BATCH == 0  # whole batches only: the one in flight was dropped
    done = subprocess.run(cmd, capture_output=True, text=True, env={**env, "SCRIPTED_DELAY_S": "0"}, timeout=300)
    assert done.returncode == 0, done.stderr
    after = _lines(out / "predictions.jsonl")
    assert len(after) == ITEMS and len({r["id"] for r in after}) == ITEMS
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["resumed"] == len(rows) and run["judged_now"] == ITEMS - len(rows)


@pytest.mark.slow
def test_sigint_stops_omniguard_eval_on_the_tiny_checkpoint(data_root: Path, tiny_checkpoint_path: Path,
                                                           tmp_path: Path) -> None:
    """Nothing injected: the installed command on the real transformers path."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "omniguard_plugins.cli", "eval", "xstest", "--limit", str(ITEMS), "--batch-size",
           str(BATCH), "--latency-sample", "0", "--data-root", str(data_root), "--model", str(tiny_checkpoint_path),
           "--device", "cpu", "--out", str(out)]
    rc, err = _interrupt_mid_run(cmd, out, dict(os.environ), start_timeout_s=180)
    _check_interrupted(out, err, rc)


def _items(n: int) -> list[EvalItem]:
    return [EvalItem(id=f"t/{i}", dataset="t", unsafe=i % 2 == 0, user=(Text("bomb" if i % 2 == 0 else "calm"),))
            for i in range(n)]


def test_rows_failed_outside_the_model_are_judged_again(tmp_path: Path) -> None:
    """Rows an older version wrote for a Ctrl-C (flat shape), an overload and a server that was
    down are judged again on resume; a model error stays unless --retry-errors."""
    items = _items(6)
    with scripted_judge({"bomb": "S9"}, cache_size=0) as judge:
        evaluate(judge, items, out_dir=tmp_path)
        path = tmp_path / "predictions.jsonl"
        rows = _lines(path)
        old_shape = {k: rows[0][k] for k in ("id", "dataset", "modality", "direction", "unsafe")}
        old_shape.update(flagged=True, error="backend: backend failed: KeyboardInterrupt", latency_ms=3.0)
        rows[1]["verdict"].update(error="overloaded: the judge is overloaded; retry later", safe=False)
        rows[2]["verdict"].update(error="backend: no endpoint answered (3 tries): connection refused", safe=False)
        rows[3]["verdict"].update(error="unparseable", safe=False)
        path.write_text("\n".join(json.dumps(r) for r in [old_shape, *rows[1:]]) + "\n")
        assert [p.error is not None for p in read_predictions(tmp_path)] == [True, True, True, True, False, False]
        judge.backend.reset()
        evaluate(judge, items, out_dir=tmp_path)
        assert len(judge.backend.requests) == 3  # rows 0, 1, 2
        assert [p.id for p in read_predictions(tmp_path) if p.error] == ["t/3"]
        run = json.loads((tmp_path / "run.json").read_text())
        assert run["judged_again"] == 3
        judge.backend.reset()
        evaluate(judge, items, out_dir=tmp_path, retry_errors=True)
        assert len(judge.backend.requests) == 1
    assert not any(p.error for p in read_predictions(tmp_path))
    assert len(_lines(tmp_path / "predictions.jsonl")) == 6
