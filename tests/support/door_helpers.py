"""Helpers for door tests: real processes on loopback (``omniguard serve``, the small upstream
LLM, the LiteLLM proxy). A module of its own (not ``conftest``) so tests import it by a name
no other folder's conftest can shadow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price list

import httpx  # noqa: E402

from tests.support import serve_helpers  # noqa: E402 - serve_helpers: the one way to start `omniguard serve`
from tests.support.serve_helpers import TOKEN, ServerProcess, free_port, start_server  # noqa: E402, F401 - for tests

HERE = Path(__file__).resolve().parent

UPSTREAM_KEY = "sk-upstream-key-42"


def start_process(cmd: list[str], port: int, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                  ready: str = "/v1/models", timeout_s: float = 90.0) -> ServerProcess:
    """A helper process (the upstream LLM, the LiteLLM proxy), once ``GET ready`` answers 200."""
    return serve_helpers.start_process(cmd, port, env={**os.environ, **(env or {})}, cwd=cwd, ready=ready,
                                       timeout_s=timeout_s)


def start_upstream(key: str | None = UPSTREAM_KEY) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, str(HERE / "upstream_app.py"), "--port", str(port)] + (["--key", key] if key else [])
    return start_process(cmd, port)


def start_guard(*args: str, **kwargs: object) -> ServerProcess:
    """``omniguard serve`` for door tests (backends as ``tests.support.door_backends:doors``)."""
    return start_server(*args, **kwargs)  # type: ignore[arg-type]


def seen(upstream: ServerProcess) -> list[dict]:
    """What the upstream LLM received so far (bodies and Authorization headers)."""
    return httpx.get(f"{upstream.url}/_seen", timeout=10).json()
