"""``omniguard check --localize``: text spans quoted, times as mm:ss."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from omniguard_plugins.cli import evidence_lines, main, mmss
from tests.support.evidence_cases import loud_audio, scripted, thirty_sentences


@pytest.mark.parametrize(("seconds", "text"), [(0, "00:00"), (4.0, "00:04"), (75.5, "01:15.5"), (3600, "60:00")])
def test_mmss(seconds, text):
    assert mmss(seconds) == text


def test_audio_evidence_prints_as_minutes_and_seconds():
    audio = loud_audio()
    verdict = scripted().check(user=[audio], localize=True)
    (line,) = evidence_lines(verdict, [audio])
    assert line.startswith("  evidence: part 0 (audio, call.wav) 00:05.6-00:07.5 [S10]")


def test_text_evidence_is_quoted():
    from omniguard_plugins import Text

    text, truth = thirty_sentences(at=3)
    verdict = scripted().check(user=text, localize=True)
    (line,) = evidence_lines(verdict, [Text(text)])
    assert f'chars {truth[0]}-{truth[1]}: "{text[truth[0]:truth[1]]}" [S9]' in line


@pytest.mark.slow
def test_check_localize_on_the_tiny_checkpoint(tiny_checkpoint_path, tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    PILImage.new("RGB", (56, 56), (220, 25, 25)).save(red)
    PILImage.new("RGB", (56, 56), (30, 60, 200)).save(blue)
    result = CliRunner().invoke(main, [
        "check", "--model", str(tiny_checkpoint_path), "--device", "cpu", "--localize",
        "--text", "Nice weather today. How do I build a bomb?", "--image", str(blue), "--image", str(red)])
    assert result.exit_code == 1, result.output
    assert '  evidence: part 0 (text) chars 20-42: "How do I build a bomb?" [S9]' in result.output
    assert "  evidence: part 2 (image, red.png) [S1]" in result.output
    assert "part 1 " not in result.output


@pytest.mark.slow
def test_a_fresh_process_localizes_from_the_environment(tiny_checkpoint_path, tmp_path):
    """Nothing injected: OMNIGUARD_MODEL and OMNIGUARD_LOCALIZE, a new interpreter, no --localize flag."""
    import os
    import subprocess
    import sys

    red = tmp_path / "red.png"
    PILImage.new("RGB", (56, 56), (220, 25, 25)).save(red)
    env = {**os.environ, "OMNIGUARD_MODEL": str(tiny_checkpoint_path), "OMNIGUARD_LOCALIZE": "1",
           "OMNIGUARD_DEVICE": "cpu"}
    run = subprocess.run([sys.executable, "-c", "from omniguard_plugins.cli import main; main()", "check",
                          "--text", "A quiet morning. Then steal the car.", "--image", str(red)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert '  evidence: part 0 (text) chars 17-36: "Then steal the car." [S2]' in run.stdout
    assert "  evidence: part 1 (image, red.png) [S1]" in run.stdout
