"""Fixtures for reliability tests: servers on loopback only, every one stopped at the end.

The server helpers of ``tests.support.serve_helpers`` are reused; ``tests.support.reliability_backends``
holds the fault-injecting backends a server process loads with ``--backend-factory``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.serve_helpers import server_pool


@pytest.fixture
def reliability_server() -> Iterator:
    """Start ``omniguard serve`` processes (which load ``tests.support.reliability_backends:NAME``)."""
    with server_pool() as start:
        yield start
