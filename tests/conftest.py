"""Shared fixtures. Tests run offline: no model hub, no network but loopback."""

from __future__ import annotations

import os

# settings a developer's shell may carry must not change what the tests see
for _name in [n for n in os.environ if n.startswith("OMNIGUARD_") and n != "OMNIGUARD_TINY_CACHE"]:
    del os.environ[_name]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI runs the property and fuzz tests on a fixed sequence of examples, so a green run stays green
# and a red one reproduces; a developer's run explores new examples each time
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_checkpoint_path() -> Path:
    """The tiny trained OmniGuard-shaped checkpoint (built once, cached on disk)."""
    from omniguard_plugins.testing import tiny_checkpoint

    return tiny_checkpoint()


@pytest.fixture(scope="session")
def tiny_judge(tiny_checkpoint_path: Path):
    """A judge on the real transformers path (CPU), shared by the session's end-to-end tests."""
    from omniguard_plugins import OmniGuard

    judge = OmniGuard(model=str(tiny_checkpoint_path), device="cpu", max_wait_ms=5)
    judge.load()
    yield judge
    judge.close()
