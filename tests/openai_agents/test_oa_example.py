"""examples/openai_agents_agent.py runs offline as its docstring says (scripted judge)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_agent.py"


def test_the_agent_example_trips_each_guardrail_once():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIGUARD_")}
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ToolInputGuardrailTripwireTriggered: output unsafe ['S1']" in out.stdout
    assert "ToolOutputGuardrailTripwireTriggered: tool unsafe ['S1']" in out.stdout
    assert "InputGuardrailTripwireTriggered: input unsafe ['S9']" in out.stdout
    assert "posted: ['The sky photo']" in out.stdout
