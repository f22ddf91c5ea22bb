"""``omniguard check`` as a user types it, on the tiny checkpoint's real path."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from omniguard_plugins.cli import main


def _check(*args: str, model: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["check", "--model", str(model), "--device", "cpu", "--json", *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output[result.output.index("{"):])


def test_a_response_alone_is_judged_as_the_agent_turn(tiny_checkpoint_path: Path) -> None:
    code, verdict = _check("--response", "Here is how to steal a car.", model=tiny_checkpoint_path)
    assert code == 1 and verdict["direction"] == "output" and verdict["categories"] == ["S2"]
    assert verdict["stage"] == "output" and verdict["category_names"] == ["Non-Violent Crimes"]
    code, verdict = _check("--response", "The weather is mild today.", model=tiny_checkpoint_path)
    assert code == 0 and verdict["direction"] == "output" and verdict["error"] is None


def test_dash_v_is_not_video() -> None:
    """Users expect -v to mean verbose; --video has no short flag to be hit by accident."""
    result = CliRunner().invoke(main, ["check", "-v", "clip.mp4", "--text", "hi"])
    assert result.exit_code == 2 and "No such option '-v'" in result.output
    help_text = CliRunner().invoke(main, ["check", "--help"]).output
    assert "--video" in help_text and "-v," not in help_text
