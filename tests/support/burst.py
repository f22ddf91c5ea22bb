"""A burst of requests opened at once against a real server process, measured with a light client.

    python -m tests.support.burst                 # create_app(judge) on its defaults, 600 requests
    python -m tests.support.burst --target serve  # the same through `omniguard serve` with no limit flags

The server runs in its own process with a scripted model of known capacity
(``reliability_backends.burst``: 250 ms a batch whatever its size, so with the default
``max_batch=16`` it serves 64 requests a second) and nothing else set. A trivial app that answers
429 at once runs on the same uvicorn in another process and gets the same burst in the same run:
its figures are the floor this box sets for answering 600 connections, and the server's
rejections are measured against it. Three rounds, pooled: on this VM one burst in a few runs
comes slower for reasons of its own (both apps have shown it), and a p50 over one burst would
turn on it. The client is raw asyncio streams (one connection per request, ``Connection:
close``): httpx with 600 connections spends seconds of its own on 2 cores.

Every request asks for a critique that echoes its id (``rid=...``), so an answer given to the
wrong request is counted as *mixed up*.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.serve_helpers import ServerProcess, free_port, root_on_path, start_process
from tests.support.soak import _pct

#: the scripted model's time per batch (any size): capacity max_batch / BATCH_S requests a second
BATCH_S = 0.25


@dataclass
class Answer:
    status: int  # 0: no HTTP answer
    latency_s: float
    retry_after: str | None = None
    problem: str = ""


@dataclass
class BurstFigures:
    requests: int = 0
    admitted: int = 0
    rejected: int = 0
    rejected_without_retry_after: int = 0
    #: other statuses (503 from the connection cap, 504...) and no answer at all
    other: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    mixed_up: int = 0
    p50_admitted_ms: float = 0.0
    p99_admitted_ms: float = 0.0
    p50_rejected_ms: float = 0.0
    p99_rejected_ms: float = 0.0
    problems: list[str] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds."""
    return round(_pct(values, q), 1)


# ---------------------------------------------------------------------- the light client


def _request(port: int, rid: str) -> bytes:
    body = json.dumps({"messages": [{"role": "user", "content": f"tell me about the weather rid={rid}"}],
                       "mode": "critique"}).encode()
    head = (f"POST /v1/guard HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


async def one(port: int, timeout_s: float = 60.0) -> Answer:
    """One request on its own connection; the latency runs from opening it to the last byte."""
    rid = uuid.uuid4().hex[:12]
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
        writer.write(_request(port, rid))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_s)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return Answer(0, time.perf_counter() - started, problem=f"no answer: {type(exc).__name__}")
    elapsed = time.perf_counter() - started
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer(0, elapsed, problem=f"not HTTP: {raw[:40]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    answer = Answer(status, elapsed, headers.get("retry-after"))
    if status == 200:
        try:
            critique = json.loads(body).get("critique") or ""
        except ValueError:
            return Answer(0, elapsed, problem="a 200 without a JSON body")
        if f"rid={rid}" not in critique:
            answer.problem = f"mixed up: rid={rid} got {critique[:40]!r}"
    return answer


async def burst(port: int, count: int) -> list[Answer]:
    """``count`` requests opened at once."""
    return list(await asyncio.gather(*(one(port) for _ in range(count))))


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The process's heap frozen while a burst is measured. Inside a test suite the client is the
    pytest process, holding every module the suite imported: a burst's allocations can set off a
    gen-2 collection of all of it, and one takes about a second on this box (4.9 M objects), added
    to every request's latency (in CI it read as a 1 s server stall; no SYN was dropped, the
    kernel's counters said). Frozen, a collection scans only the burst's own objects."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def measure(coroutine: Any) -> Any:
    """Run a burst (or any measured client coroutine) with the heap frozen."""
    with frozen_heap():
        return asyncio.run(coroutine)


async def sequential(port: int, count: int) -> list[Answer]:
    return [await one(port) for _ in range(count)]


def figures(answers: list[Answer]) -> BurstFigures:
    out = BurstFigures(requests=len(answers))
    admitted, rejected = [], []
    for a in answers:
        if a.status == 0:
            out.unanswered += 1
            out.problems.append(a.problem)
        elif a.status == 200:
            out.admitted += 1
            admitted.append(a.latency_s)
            if a.problem:
                out.mixed_up += 1
                out.problems.append(a.problem)
        elif a.status == 429:
            out.rejected += 1
            rejected.append(a.latency_s)
            out.rejected_without_retry_after += a.retry_after is None
        else:
            out.other[str(a.status)] = out.other.get(str(a.status), 0) + 1
    out.p50_admitted_ms, out.p99_admitted_ms = pct(admitted, 0.5), pct(admitted, 0.99)
    out.p50_rejected_ms, out.p99_rejected_ms = pct(rejected, 0.5), pct(rejected, 0.99)
    out.problems = out.problems[:10]
    return out


# ---------------------------------------------------------------------- the servers


def _serve_app(port: int) -> None:
    """``create_app(judge)`` with nothing set but the scripted model, on plain ``uvicorn.run``."""
    import uvicorn

    from omniguard_plugins import OmniGuard
    from omniguard_plugins.server import create_app
    from tests.support.reliability_backends import burst as backend

    judge = OmniGuard(backend=backend(None), model="scripted")  # type: ignore[arg-type]
    uvicorn.run(create_app(judge), host="127.0.0.1", port=port, log_level="warning")


def _serve_trivial(port: int) -> None:
    """An ASGI app that answers every request 429 with Retry-After at once (and /healthz 200)."""
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ok = scope["path"] == "/healthz"
        body = b'{"status": "ready"}' if ok else b'{"error": {"message": "overloaded", "type": "rate_limit_error"}}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200 if ok else 429,
                    "headers": headers + ([] if ok else [(b"retry-after", b"1")])})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start(target: str, python: str = sys.executable) -> ServerProcess:
    """A server process: ``app`` (create_app on uvicorn.run), ``serve`` (the CLI) or ``trivial``."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": root_on_path()}
    env.pop("OMNIGUARD_TOKEN", None)
    if target == "serve":
        cmd = [python, "-m", "omniguard_plugins.server", "--port", str(port), "--log-level", "warning",
               "--backend-factory", "tests.support.reliability_backends:burst"]
    else:
        cmd = [python, "-m", "tests.support.burst", "--serve", target, "--port", str(port)]
    return start_process(cmd, port, env=env, timeout_s=60.0, args=cmd[2:])


# ---------------------------------------------------------------------- one run


def run_burst(target: str = "app", count: int = 600, unloaded: int = 30, rounds: int = 3) -> dict[str, Any]:
    """Both processes up; the server's unloaded p99 (one client, one request at a time); then
    ``rounds`` of the server's burst, each between two of the trivial app's (T S T S ... T, 0.5 s
    apart), so both see the same box. ``server`` and ``trivial`` pool every burst's answers (a
    p50 over all of them: one burst the box slowed does not decide it); ``server_runs`` and
    ``trivial_runs`` give each burst apart. The server's /healthz afterwards."""
    import httpx

    load_start = os.getloadavg()[0]
    trivial, server = start("trivial"), None
    try:
        server = start(target)
        measure(sequential(trivial.port, 5))
        alone = measure(sequential(server.port, unloaded + 3))[3:]  # three to warm up
        unloaded_p99 = pct([a.latency_s for a in alone], 0.99)
        floor_runs: list[list[Answer]] = []
        server_runs: list[list[Answer]] = []
        for port in [trivial.port, *[server.port, trivial.port] * rounds]:
            time.sleep(0.5)
            answers = measure(burst(port, count))
            (floor_runs if port == trivial.port else server_runs).append(answers)
        health = httpx.get(f"{server.url}/healthz", timeout=10).json()
    finally:
        trivial.stop()
        if server is not None:
            server.stop()
    return {"target": target, "count": count, "rounds": rounds, "batch_s": BATCH_S, "unloaded_p99_ms": unloaded_p99,
            "server": asdict(figures([a for run in server_runs for a in run])),
            "trivial": asdict(figures([a for run in floor_runs for a in run])),
            "server_runs": [asdict(figures(run)) for run in server_runs],
            "trivial_runs": [asdict(figures(run)) for run in floor_runs], "health_after": health,
            "loadavg": [round(load_start, 2), round(os.getloadavg()[0], 2), os.cpu_count()]}


def summary_line(report: dict[str, Any]) -> str:
    s, t = report["server"], report["trivial"]
    bound = report["health_after"].get("admission", {}).get("queue_delay_bound_s")

    def each(runs: list[dict[str, Any]], key: str) -> str:
        return "/".join(f"{r[key]:g}" for r in runs)

    return (f"{report['target']}: {report['rounds']} x {report['count']} at once -> {s['admitted']} admitted "
            f"(p50 {s['p50_admitted_ms']} ms, p99 {s['p99_admitted_ms']} ms, per burst "
            f"{each(report['server_runs'], 'p99_admitted_ms')}; unloaded p99 {report['unloaded_p99_ms']} ms), "
            f"{s['rejected']} rejected (p50 {s['p50_rejected_ms']} ms, per burst "
            f"{each(report['server_runs'], 'p50_rejected_ms')}; p99 {s['p99_rejected_ms']} ms; trivial 429 app p50 "
            f"{t['p50_rejected_ms']} ms, per burst {each(report['trivial_runs'], 'p50_rejected_ms')}; p99 "
            f"{t['p99_rejected_ms']} ms), other {s['other']}, unanswered {s['unanswered']}, mixed up "
            f"{s['mixed_up']}; queue-delay bound {bound} s; load average {report['loadavg'][0]} -> "
            f"{report['loadavg'][1]} on {report['loadavg'][2]} cores")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["app", "serve"], default="app")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--json", default=None, help="write the report here ('-' for stdout)")
    ap.add_argument("--serve", choices=["app", "trivial"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        (_serve_app if args.serve == "app" else _serve_trivial)(args.port)
        return 0
    report = run_burst(args.target, args.count)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(summary_line(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
