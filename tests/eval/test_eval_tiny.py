"""The CI run: ``omniguard eval`` on a small sample of every set, derived audio and video
included, on the tiny checkpoint's real transformers path; then the report in headless Chromium.

The tiny model's verdicts mean nothing about safety: this proves the plumbing end to end
(loaders, derived media, check_many, metrics, plots, resume), not the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from omniguard_plugins.cli import main
from omniguard_plugins.eval import DATASETS, read_predictions

pytestmark = pytest.mark.slow

LIMIT = 3
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def tiny_run(tiny_checkpoint_path: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("eval-tiny") / "run"
    result = CliRunner().invoke(main, ["eval", "all", "--limit", str(LIMIT), "--data-root", str(data_root),
                                       "--model", str(tiny_checkpoint_path), "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def test_every_set_and_modality_reaches_the_report(tiny_run: tuple[Path, str]) -> None:
    out, output = tiny_run
    sets = [n for n, info in DATASETS.items() if info.available()]
    predictions = read_predictions(out)
    assert len(predictions) == LIMIT * len(sets)
    assert {p.dataset for p in predictions} == set(sets)
    modalities = {p.modality for p in predictions}
    assert {"text", "image", "text+image", "video", "text+video"} <= modalities
    if DATASETS["xstest_audio"].available():
        assert {"audio", "text+audio", "image+audio"} <= modalities
    assert {p.direction for p in predictions} == {"input", "output"}
    # the transformers backend returns P(unsafe) with its verdicts, so the curves are drawn
    assert all(p.score is not None and 0.0 <= p.score <= 1.0 for p in predictions if not p.error)
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["n"] == len(predictions) and set(report["by_dataset"]) == set(sets)
    for name in ("report.md", "report.html", "pr_curve.png", "roc_curve.png", "reliability.png", "confusion.png",
                 "datasets_f1.png", "categories.png"):
        assert (out / name).stat().st_size > 1000, name
    assert "tiny test checkpoint" in (out / "report.md").read_text()
    assert f"{len(predictions)} items" in output
    assert "warning: the tiny test checkpoint answered" in output


def test_a_second_run_resumes_without_judging(tiny_run: tuple[Path, str], tiny_checkpoint_path: Path,
                                              data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)  # the browser test reads the full run's report
    before = (out / "predictions.jsonl").read_text()
    result = CliRunner().invoke(main, ["eval", "all", "--limit", str(LIMIT),
                                       "--data-root", str(data_root), "--model", str(tiny_checkpoint_path),
                                       "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["judged_now"] == 0 and run["resumed"] == len(read_predictions(out)) and run["status"] == "complete"
    assert (out / "predictions.jsonl").read_text() == before


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's Chromium is not installed at {CHROMIUM}")
def test_report_html_shows_its_plots_in_chromium(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out, _ = tiny_run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1240, "height": 1400})
            page.goto((out / "report.html").as_uri())
            images = page.locator("figure img")
            assert images.count() == 7  # with scores: the threshold sweep too
            widths = page.eval_on_selector_all(
                "figure img", "els => els.map(e => [e.complete, e.naturalWidth, e.getBoundingClientRect().width])")
            assert all(done and natural > 0 and shown > 0 for done, natural, shown in widths), widths
            assert page.locator("h2", has_text="Per set").is_visible()
            assert page.locator("td", has_text="figstep_flash_video").first.is_visible()
            # EVAL_SCREENSHOT=docs/eval_report.png regenerates the README's picture
            shot = Path(os.environ.get("EVAL_SCREENSHOT") or tmp_path / "eval_report.png")
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
