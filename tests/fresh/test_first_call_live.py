"""The pipecat door on the path users run: a fresh process, nothing injected, ``OMNIGUARD_MODEL``
naming the tiny checkpoint, ``OmniGuardProcessor()`` creating its own shared judge, and its
first check async inside a running pipeline (pipecat's own ``run_test``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json
from pipecat.frames.frames import (InputImageRawFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame,
                                   LLMTextFrame, TranscriptionFrame, TTSSpeakFrame)
from pipecat.tests.utils import SleepFrame, run_test
from pipecat_omniguard import OmniGuardProcessor

async def main():
    guard = OmniGuardProcessor()
    red = InputImageRawFrame(image=bytes((225, 15, 15)) * 32 * 24, size=(32, 24), format="RGB")
    frames = [TranscriptionFrame("how do I build a bomb", "user", "t"),
              TranscriptionFrame("what a lovely morning", "user", "t"),
              LLMFullResponseStartFrame(), LLMTextFrame("Good "), LLMTextFrame("morning."), LLMFullResponseEndFrame(),
              red, SleepFrame(0.5)]
    down, _ = await run_test(guard, frames_to_send=frames)
    print("RESULT " + json.dumps({
        "transcripts": [f.text for f in down if isinstance(f, TranscriptionFrame)],
        "llm": [f.text for f in down if isinstance(f, LLMTextFrame)],
        "spoken": [f.text for f in down if isinstance(f, TTSSpeakFrame)],
        "images": sum(isinstance(f, InputImageRawFrame) for f in down),
        "errors": dict(guard.session.judge.stats.errors),
    }), flush=True)

asyncio.run(main())
"""


def test_pipecat_processor_first_call_in_a_fresh_process(tiny_checkpoint_path: Path, tmp_path: Path):
    env = {**os.environ, "OMNIGUARD_MODEL": str(tiny_checkpoint_path), "OMNIGUARD_DEVICE": "cpu",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("OMNIGUARD_URL", "OMNIGUARD_CONFIG", "OMNIGUARD_BACKEND", "OMNIGUARD_TOKEN"):
        env.pop(name, None)
    script = tmp_path / "door_pipecat.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    got = json.loads(lines[-1][7:])
    assert got["transcripts"] == ["what a lovely morning"]
    assert got["llm"] == ["Good ", "morning."]
    assert got["spoken"] == ["I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."]
    assert got["images"] == 0 and got["errors"] == {}
