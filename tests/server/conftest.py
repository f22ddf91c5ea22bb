"""Fixtures for server tests (helpers live in serve_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.serve_helpers import server_pool


@pytest.fixture
def server_factory() -> Iterator:
    """Start servers in a test; every one is stopped at the end."""
    with server_pool() as start:
        yield start
