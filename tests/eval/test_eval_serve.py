"""``omniguard eval --url``: the same evaluation through a real ``omniguard serve`` process (the
openai backend), with verdicts equal to an in-process judge's on the same scripted model; and
the report names the model the endpoint serves (``/v1/models``), never the client's default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")

from omniguard_plugins.cli import main  # noqa: E402
from omniguard_plugins.config import DEFAULT_MODEL  # noqa: E402
from omniguard_plugins.eval import evaluate, load_dataset, read_predictions  # noqa: E402
from omniguard_plugins.testing import scripted_judge  # noqa: E402
from tests.support.serve_backends import keywords_and_red_images  # noqa: E402
from tests.support.serve_helpers import start_server  # noqa: E402


def test_eval_through_omniguard_serve_matches_in_process(data_root: Path, tmp_path: Path) -> None:
    sets = ["xstest", "harmbench_response", "mossbench_image", "figstep_video"]
    server = start_server("--backend-factory", "tests.support.serve_backends:keywords",
                          "--served-model-name", "acme-guard-2")
    try:
        args = ["eval", *sets, "--limit", "8", "--data-root", str(data_root),
                "--url", server.url, "--out", str(tmp_path / "served")]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    finally:
        server.stop()
    served = sorted(read_predictions(tmp_path / "served"), key=lambda p: p.id)
    items = [i for name in sets for i in load_dataset(name, data_root, limit=8)]
    with scripted_judge(keywords_and_red_images) as judge:
        local = sorted(evaluate(judge, items).predictions, key=lambda p: p.id)
    assert [p.id for p in served] == [p.id for p in local]
    assert not any(p.error for p in served), [p.error for p in served if p.error]
    assert [(p.flagged, p.predicted_categories) for p in served] == [(p.flagged, p.predicted_categories) for p in local]
    assert {p.modality for p in served} >= {"text", "image", "video"}
    assert 0 < sum(p.flagged for p in served) < len(served)  # the verdicts vary, so equality means something
    # the served name, as the endpoint lists it, not the client's default
    run = json.loads((tmp_path / "served" / "run.json").read_text())
    assert run["model"]["id"] == "acme-guard-2" and run["model"]["source"] == "served"
    assert "acme-guard-2" in run["model"]["listed"]
    md = (tmp_path / "served" / "report.md").read_text()
    assert "**model**: acme-guard-2 (as the endpoint reports it)" in md and DEFAULT_MODEL not in md
    assert "tiny test checkpoint" not in md


@pytest.mark.slow
def test_the_tiny_checkpoint_served_is_named_and_warned_about(data_root: Path, tiny_checkpoint_path: Path,
                                                              tmp_path: Path) -> None:
    """The real transformers path behind ``omniguard serve``: the report names the checkpoint
    the server loaded and carries the tiny-model warning."""
    server = start_server("--model", str(tiny_checkpoint_path), "--device", "cpu", timeout_s=120.0)
    try:
        result = CliRunner().invoke(main, ["eval", "xstest", "--limit", "4", "--data-root", str(data_root),
                                           "--url", server.url, "--out", str(tmp_path / "tiny")])
        assert result.exit_code == 0, result.output
    finally:
        server.stop()
    run = json.loads((tmp_path / "tiny" / "run.json").read_text())
    assert run["model"]["id"] == tiny_checkpoint_path.name and run["model"]["tiny"] is True
    assert str(tiny_checkpoint_path.parent) not in json.dumps(run["model"])  # the server never names host paths
    md = (tmp_path / "tiny" / "report.md").read_text()
    assert f"**model**: {tiny_checkpoint_path.name} (as the endpoint reports it)" in md
    assert "> **Warning: the tiny test checkpoint answered" in md and DEFAULT_MODEL not in md
    assert "tiny test checkpoint answered" in (tmp_path / "tiny" / "report.html").read_text()
