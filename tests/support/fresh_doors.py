"""Run door scripts the way users run them: each in a fresh process, started together (so a suite
pays for about one model load per core), nothing injected but the environment, ``OMNIGUARD_MODEL``
naming the tiny checkpoint. A script reports with ``report(**values)`` (one ``RESULT`` JSON line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PRELUDE", "run_doors"]

PRELUDE = """
import asyncio, json, sys
def report(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""


def run_doors(doors: Mapping[str, str], model: Path, folder: Path, **env_extra: str) -> dict[str, dict]:
    """Each door's reported values, or ``{"crashed": returncode, "stderr": tail}``."""
    env = {**os.environ, "OMNIGUARD_MODEL": str(model), "OMNIGUARD_DEVICE": "cpu",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false", **env_extra}
    for name in ("OMNIGUARD_URL", "OMNIGUARD_CONFIG", "OMNIGUARD_BACKEND", "OMNIGUARD_TOKEN"):
        env.pop(name, None)
    procs = {}
    for name, body in doors.items():
        script = folder / f"door_{name}.py"  # never the name of a package it imports
        script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))
        procs[name] = subprocess.Popen([sys.executable, str(script)], env=env, cwd=folder,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, dict] = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        out[name] = json.loads(lines[-1][7:]) if lines else {"crashed": proc.returncode, "stderr": stderr[-3000:]}
    return out
