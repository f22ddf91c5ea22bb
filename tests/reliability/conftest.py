"""Fixtures for reliability tests: servers on loopback only, every one stopped at the end.

The server helpers of ``tests/server`` are reused; ``reliability_backends`` (beside this file)
holds the fault-injecting backends a server process loads with ``--backend-factory``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERVER_TESTS = HERE.parent / "server"
for _path in (str(HERE), str(SERVER_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from serve_helpers import server_pool  # noqa: E402


@pytest.fixture
def reliability_server(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Start ``omniguard serve`` processes that can load ``reliability_backends:NAME``."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    with server_pool() as start:
        yield start
