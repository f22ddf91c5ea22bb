"""Fixtures for server tests (helpers live in serve_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_helpers import ServerProcess, start_server


@pytest.fixture
def server_factory() -> Iterator:
    """Start servers in a test; every one is stopped at the end."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs: object) -> ServerProcess:
        server = start_server(*args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
