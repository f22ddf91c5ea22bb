"""``omniguard eval --localize N``: the localization table in report.md, the HTML report and
report.json, recorded in run.json and checked on resume; scripted judge and the tiny checkpoint."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from omniguard_plugins.cli import main
from omniguard_plugins.eval.localize import LOCALIZE_HEAD, LOCALIZE_SETS, table_rows
from omniguard_plugins.media import DecodedMedia
from omniguard_plugins.testing import TINY_TRIGGERS, keyword_handler, scripted_judge, write_answer


def _red(pixels: np.ndarray) -> bool:
    r, g, b = pixels.reshape(-1, 3).astype(float).mean(axis=0)
    return bool(r > 150 and g < 100 and b < 100)


def _handler(prompt: str, media: list[DecodedMedia]) -> str:
    """Unsafe for a red image or any red video frame, else the tiny checkpoint's trigger words."""
    for m in media:
        if m.kind == "image" and _red(np.asarray(m.image.convert("RGB"))):  # type: ignore[union-attr]
            return write_answer(safe=False, categories=["S1"], critique="A violent image.")
        if m.kind == "video" and any(_red(np.asarray(f)) for f in m.frames):  # type: ignore[union-attr]
            return write_answer(safe=False, categories=["S1"], critique="A violent scene.")
    return keyword_handler(dict(TINY_TRIGGERS))(prompt, media)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("localize-media")


@pytest.fixture
def scripted_cli(monkeypatch: pytest.MonkeyPatch, media_dir: Path) -> list[int]:
    """The CLI's judge is a scripted one; returns a list that counts the judges made."""
    made: list[int] = []

    def judge(model, url, device):
        made.append(1)
        return scripted_judge(_handler)

    monkeypatch.setattr("omniguard_plugins.eval.cli._judge", judge)
    monkeypatch.setenv("OMNIGUARD_EVAL_CACHE", str(media_dir))
    return made


def _section(md: str) -> str:
    """The "## Localization" section of a report.md (up to the next heading)."""
    match = re.search(r"^## Localization\n(.*?)(?=^## |\Z)", md, re.M | re.S)
    assert match, md
    return match.group(1)


def _assert_table_everywhere(out: Path) -> list[dict]:
    """localize.json's numbers appear, formatted the same, in report.md, report.html and localize.md."""
    rows = json.loads((out / "localize.json").read_text())
    assert [r["set"] for r in rows] == list(LOCALIZE_SETS)
    section = _section((out / "report.md").read_text())
    page = (out / "report.html").read_text()
    assert "<h2>Localization</h2>" in page
    assert "| " + " | ".join(LOCALIZE_HEAD) + " |" in section
    for cells in table_rows(rows):
        assert "| " + " | ".join(cells) + " |" in section
        assert "| " + " | ".join(cells) + " |" in (out / "localize.md").read_text()
        assert "".join(f"<td>{html.escape(c)}</td>" if re.match(r"^[\d.%]+$|^n/a$", c)
                       else f"<td class='t'>{html.escape(c)}</td>" for c in cells) in page
    assert json.loads((out / "report.json").read_text())["localize"] == rows
    return rows


def test_localize_beside_sets(scripted_cli: list[int], data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["eval", "xstest", "--limit", "6", "--data-root", str(data_root), "--out", str(out), "--localize", "2",
            "--latency-sample", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {r["set"]: r for r in _assert_table_everywhere(out)}
    # the scripted judge sees the red image, the red second and the trigger sentence: all found
    for name in ("localize_images", "localize_text", "localize_video"):
        assert rows[name]["items"] == 2 and rows[name]["unsafe_verdicts"] == 2 and rows[name]["hit_rate"] == 1.0
        assert rows[name]["checks_per_verdict"] > 0
    assert rows["localize_images"]["mean_iou"] == 1.0
    md = (out / "report.md").read_text()
    assert "## Per set" in md and md.index("## Per set") < md.index("## Localization")
    assert "localization localize_text: items 2, unsafe verdicts 2, hit rate 100%" in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["localize"] == 2 and run["sets"] == ["xstest"] and run["status"] == "complete"

    # the same command resumes: nothing judged again, the same table
    before = (out / "localize.json").stat().st_mtime_ns
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert (out / "localize.json").stat().st_mtime_ns == before
    assert _section((out / "report.md").read_text()) == _section(md)

    # another --localize (or none) into the same folder is refused in one line
    for other in (["--localize", "3"], []):
        refused = CliRunner().invoke(main, args[:-4] + other + ["--latency-sample", "0"])
        assert refused.exit_code == 1, refused.output
        line = refused.output.strip()
        assert "\n" not in line and "localize=2" in line and "use another --out folder" in line, line


def test_localize_alone(scripted_cli: list[int], tmp_path: Path) -> None:
    out = tmp_path / "loc"
    result = CliRunner().invoke(main, ["eval", "--localize", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {"report.md", "report.html", "report.json", "run.json", "localize.md", "localize.json"} <= {
        p.name for p in out.iterdir()}
    assert not (out / "predictions.jsonl").exists()
    _assert_table_everywhere(out)
    md = (out / "report.md").read_text()
    assert md.startswith("# OmniGuard evaluation: localization") and "**localization**: 1 items per" in md
    run = json.loads((out / "run.json").read_text())
    assert run["localize"] == 1 and run["sets"] == [] and run["status"] == "complete"
    refused = CliRunner().invoke(main, ["eval", "--localize", "2", "--out", str(out)])
    assert refused.exit_code == 1 and "localize=1" in refused.output, refused.output


def test_no_sets_and_no_localize_is_a_usage_error(scripted_cli: list[int]) -> None:
    result = CliRunner().invoke(main, ["eval"])
    assert result.exit_code == 2 and "name the sets" in result.output
    assert not scripted_cli


@pytest.mark.slow
def test_localize_on_the_tiny_checkpoint(tiny_checkpoint_path: Path, media_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIGUARD_EVAL_CACHE", str(media_dir))
    out = tmp_path / "tiny"
    result = CliRunner().invoke(main, ["eval", "--localize", "2", "--out", str(out), "--model",
                                       str(tiny_checkpoint_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = {r["set"]: r for r in _assert_table_everywhere(out)}
    # the tiny checkpoint's trigger words are in every unsafe sentence: the text set is found
    text = rows["localize_text"]
    assert text["unsafe_verdicts"] == 2 and text["hit_rate"] == 1.0 and text["mean_iou"] > 0.5
    assert "Warning: the tiny test checkpoint answered" in (out / "report.html").read_text()


def test_sigint_stops_a_localization_run(tmp_path: Path) -> None:
    """Ctrl-C while the localization sets are judged: exit 130 at once, no table written, run.json
    says interrupted (the same command judges them again)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    env = {**os.environ, "SCRIPTED_DELAY_S": "30", "OMNIGUARD_EVAL_CACHE": str(tmp_path / "media")}
    script = Path(__file__).resolve().parents[1] / "support" / "scripted_eval.py"
    proc = subprocess.Popen([sys.executable, str(script), "eval", "--localize", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        while not (out / "run.json").exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # a safety net: one scripted batch takes 30 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: the batch in flight was not written" in err and "Traceback" not in err
    assert not (out / "localize.json").exists() and not (out / "report.md").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
