"""Helpers for server tests: real ``omniguard serve`` processes on loopback (media: ``media_makers``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

#: the repository root: on a server process's PYTHONPATH, so ``--backend-factory tests.support.<module>:NAME`` imports
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-123"


def root_on_path() -> str:
    """``PYTHONPATH`` for a subprocess that imports ``tests.support``: the repository root first."""
    return os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """An ``omniguard serve`` subprocess; ``url`` is its root (``/v1`` is added by clients)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    token: str | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {'name{labels}': value} (label order as exported)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the process (if still running) and remove its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log_path.unlink(missing_ok=True)


@contextmanager
def server_pool() -> Iterator[Callable[..., ServerProcess]]:
    """``start(*args, **kwargs)`` for servers that are all stopped when the block ends."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs: object) -> ServerProcess:
        server = start_server(*args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def start_process(cmd: list[str], port: int, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                  ready: str = "/healthz", timeout_s: float = 60.0, token: str | None = None,
                  args: list[str] | None = None) -> ServerProcess:
    """Launch ``cmd`` (a server listening on ``port``); return once ``GET ready`` answers 200."""
    fd, log_name = tempfile.mkstemp(prefix="omniguard-serve-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(cmd, env=env if env is not None else dict(os.environ), cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port, Path(log_name), token, list(args if args is not None else cmd))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:3]} exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + ready, timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"{cmd[:3]} did not answer {ready} within {timeout_s}s:\n{server.log()}")


def start_server(*args: str, token: str | None = None, delay_s: float = 0.0, timeout_s: float = 60.0) -> ServerProcess:
    """Launch ``python -m omniguard_plugins.server ARGS`` on a free port; wait for /healthz."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": root_on_path(),
           "OMNIGUARD_TEST_DELAY_S": str(delay_s)}
    env.pop("OMNIGUARD_TOKEN", None)
    cmd = [sys.executable, "-m", "omniguard_plugins.server", "--port", str(port), "--log-level", "warning", *args]
    if token:
        cmd += ["--token", token]
    return start_process(cmd, port, env=env, timeout_s=timeout_s, token=token, args=list(args))
