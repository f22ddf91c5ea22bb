"""``omniguard eval --url``: the same evaluation through a real ``omniguard serve`` process (the
openai backend), with verdicts equal to an in-process judge's on the same scripted model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from serve_backends import keywords_and_red_images  # noqa: E402
from serve_helpers import start_server  # noqa: E402

from omniguard_plugins.cli import main  # noqa: E402
from omniguard_plugins.eval import evaluate, load_dataset, read_predictions  # noqa: E402
from omniguard_plugins.testing import scripted_judge  # noqa: E402


def test_eval_through_omniguard_serve_matches_in_process(data_root: Path, tmp_path: Path) -> None:
    sets = ["xstest", "harmbench_response", "mossbench_image", "figstep_video"]
    server = start_server("--backend-factory", "serve_backends:keywords")
    try:
        args = ["eval", *sets, "--limit", "8", "--data-root", str(data_root),
                "--url", server.url, "--out", str(tmp_path / "served")]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    finally:
        server.stop()
    served = read_predictions(tmp_path / "served")
    items = [i for name in sets for i in load_dataset(name, data_root, limit=8)]
    with scripted_judge(keywords_and_red_images) as judge:
        local = evaluate(judge, items).predictions
    assert [p.id for p in served] == [p.id for p in local]
    assert not any(p.error for p in served), [p.error for p in served if p.error]
    assert [(p.flagged, p.predicted_categories) for p in served] == [(p.flagged, p.predicted_categories) for p in local]
    assert {p.modality for p in served} >= {"text", "image", "video"}
    assert 0 < sum(p.flagged for p in served) < len(served)  # the verdicts vary, so equality means something
