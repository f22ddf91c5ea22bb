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
