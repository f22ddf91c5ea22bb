"""Fixtures for the evaluation tests: the real benchmark folders (skip without them) and a
scripted judge whose verdicts the tests decide."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniguard_plugins.errors import ConfigError


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``../shared/data/benchmarks`` beside the checkout (read in place, never copied)."""
    from omniguard_plugins.eval import data_root as resolve

    try:
        return resolve()
    except ConfigError as exc:
        pytest.skip(f"benchmark data not available: {exc}")


@pytest.fixture
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache for derived media, so a test sees its files made."""
    return tmp_path_factory.mktemp("eval-media")
