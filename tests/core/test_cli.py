"""The CLI's help and the README's command lines stay true."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from omniguard_plugins.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(main, ["--help"]).output
    for command in ("check", "serve", "bench", "demo"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command


def test_check_without_content_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2
    assert "nothing to check" in result.output


def _readme_commands() -> list[list[str]]:
    lines = [line.split("#", 1)[0].strip() for line in README.read_text().splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("omniguard ")]


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: " ".join(a)[:40])
def test_readme_command_lines_parse(argv: list[str]) -> None:
    command = main.get_command(None, argv[0])  # type: ignore[arg-type]
    assert command is not None, argv[0]
    command.make_context(argv[0], argv[1:])  # raises on an unknown option or a bad value


@pytest.mark.slow
def test_bench_measures_each_fast_path_off_in_the_same_run(tiny_checkpoint_path: Path, tmp_path: Path) -> None:
    """The harness end to end on the tiny checkpoint: rows, ratios, and the RESULTS.md section
    (no speed is asserted: speed lives in benchmarks)."""
    import json

    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    result = CliRunner().invoke(main, [
        "bench", "--model", str(tiny_checkpoint_path), "--device", "cpu", "--workloads", "text,image",
        "--modes", "score", "--concurrency", "2", "--requests", "2", "--naive-requests", "1",
        "--critique-tokens", "4", "--without", "prefix-cache,media-cache,decode-graphs",
        "--markdown", str(md), "--json", str(js),
    ])
    assert result.exit_code == 0, result.output
    assert "--without decode-graphs: already off in this run" in result.output
    rows = json.loads(js.read_text())["results"]
    measured = [(r["workload"], r["mode"], r["extra"].get("without")) for r in rows]
    assert measured == [
        ("text", "critique", None), ("text", "score", "prefix-cache"), ("text", "score", "media-cache"),
        ("text", "score", None),
        ("image", "critique", None), ("image", "score", "prefix-cache"), ("image", "score", "media-cache"),
        ("image", "score", None),
    ]
    assert all(r["errors"] == 0 and r["req_s"] > 0 for r in rows)
    assert set(rows[3]["extra"]["x_from"]) == {"prefix-cache", "media-cache"}
    table = md.read_text()
    assert table.startswith("## ") and "| text | score | 2 |  |" in table and "prefix-cache x" in table
