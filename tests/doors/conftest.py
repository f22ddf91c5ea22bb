"""Fixtures for door tests; the helpers they use live in ``door_helpers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.door_helpers import TOKEN, ServerProcess, start_guard, start_upstream


@pytest.fixture(scope="module")
def guard() -> Iterator[ServerProcess]:
    """``omniguard serve`` on the scripted door backend, behind a token."""
    server = start_guard("--backend-factory", "tests.support.door_backends:doors", token=TOKEN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerProcess]:
    process = start_upstream()
    yield process
    process.stop()
