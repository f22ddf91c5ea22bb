"""``omniguard eval`` in its own process on a scripted judge (a keyword table, a fixed model
time per batch): for tests that must signal a real process. Usage: ``python tests/support/scripted_eval.py
eval ARGS...``; ``SCRIPTED_DELAY_S`` sets the model time per batch (default 0.4 s)."""

from __future__ import annotations

import os

from omniguard_plugins.cli import main
from omniguard_plugins.eval import cli
from omniguard_plugins.judge import OmniGuard
from omniguard_plugins.testing import TINY_TRIGGERS, ScriptedBackend, keyword_handler


def _judge(model: str | None, url: str | None, device: str | None) -> OmniGuard:
    delay_s = float(os.environ.get("SCRIPTED_DELAY_S", "0.4"))
    backend = ScriptedBackend(keyword_handler(dict(TINY_TRIGGERS)), delay_s=delay_s)
    return OmniGuard(backend=backend, model="scripted", max_wait_ms=2.0)


if __name__ == "__main__":
    cli._judge = _judge  # type: ignore[assignment]
    main()
