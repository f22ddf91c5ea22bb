"""examples/llamaindex_agent.py runs offline as its docstring says (scripted judge)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_agent.py"


def test_the_agent_example_posts_the_safe_photo_only():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIGUARD_")}
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "posted so far: ['The sky photo']" in out.stdout
    assert "[blocked at output: ['S1']]" in out.stdout and "[blocked at tool: ['S1']]" in out.stdout
    assert "tool_calls=['post_image']" not in out.stdout  # the streamed run never showed the unsafe call
