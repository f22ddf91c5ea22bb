"""LiveKit door fixtures. ``livekit_omniguard`` is found through the editable install; a venv
installed before the package existed finds it in ``adapters/`` instead (pip install -e . fixes it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("livekit_omniguard") is None:  # pragma: no cover - an older editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "adapters"))
