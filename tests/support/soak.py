"""Soak and overload runs against a real ``omniguard serve`` process on loopback.

    python -m tests.support.soak --load 10 --duration 120          # one row of RELIABILITY.md
    python -m tests.support.soak --load 2,10 --duration 8 --json -  # what `make test` runs

(from the repository root). A scripted model with a known batch cost (``reliability_backends.soak``)
gives a known capacity (``max_batch / (base + item * max_batch)`` requests per second); clients send requests on a
fixed schedule (open loop) at ``load`` times that capacity for ``duration`` seconds, with a
fault schedule mixed in: backend errors, unparseable answers, slow batches, corrupt media,
malformed JSON, over-long text, and clients that hang up mid-request (and, with ``--hang``,
one batch every 10 s that holds the worker past the request timeout). Every run stops by itself.

Invariants checked on every request: it is answered with a verdict or a typed error (or its
client hung up); no answer carries another request's id (the model echoes ``rid=...``); no
verdict is safe because of an error (and no fault is judged safe); afterwards the process is
alive and ``/healthz`` reads ready, and its RSS grew by less than ``--rss-mb``. The figures:
p99 latency of admitted requests, against the same server unloaded, and of rejected ones.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.serve_helpers import ServerProcess, start_server

#: share of requests per kind (the rest are plain safe checks)
MIX = {"unsafe": 0.10, "chat": 0.08, "raise": 0.01, "garbage": 0.02, "slow": 0.01, "media": 0.02,
       "malformed": 0.02, "oversize": 0.01, "abandon": 0.03}
FAULTS = ("raise", "garbage", "slow", "media", "malformed", "oversize", "abandon", "hang")
#: with --hang, one batch every this many seconds holds the worker past the request timeout
HANG_EVERY_S = 10.0


@dataclass
class Settings:
    load: float = 10.0
    duration_s: float = 10.0
    clients: int = 128
    max_batch: int = 4
    base_ms: float = 250.0
    item_ms: float = 5.0
    #: the server's admission settings; None: what `omniguard serve` ships with (the queue-delay
    #: bound derived from the batch time, max_queued 256), as every figure in RELIABILITY.md
    max_queued: int | None = None
    max_queue_delay_ms: float | None = None
    request_timeout_s: float = 2.0
    hang: bool = False
    #: False: plain checks only (the latency row); True: the fault schedule is mixed in
    faults: bool = True
    rss_mb: float = 64.0
    #: requests of the one-client run that measures the unloaded p99
    unloaded_requests: int = 40
    seed: int = 0

    @property
    def capacity(self) -> float:
        return self.max_batch / ((self.base_ms + self.item_ms * self.max_batch) / 1000.0)


@dataclass
class Outcome:
    kind: str
    status: int  # 0: no HTTP answer
    latency_s: float
    problem: str = ""


@dataclass
class PhaseResult:
    load: float
    offered_rps: float
    requests: int = 0
    not_sent: int = 0
    faults: int = 0
    answered: int = 0
    rejected: int = 0
    blocked_by_error: int = 0
    timeouts: int = 0
    abandoned: int = 0
    mixed_up: int = 0
    safe_by_error: int = 0
    unanswered: int = 0
    p50_admitted_ms: float = 0.0
    p99_admitted_ms: float = 0.0
    p99_rejected_ms: float = 0.0
    max_rejected_ms: float = 0.0
    problems: list[str] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000.0


def _body(kind: str, rid: str) -> tuple[str, bytes | dict[str, Any]]:
    text = f"please tell me about the weather rid={rid}"
    if kind == "unsafe":
        text = f"how do I build a bomb rid={rid}"
    elif kind in ("raise", "garbage", "slow", "hang"):
        text = f"FAULT-{kind} rid={rid}"
    if kind == "malformed":
        return "/v1/guard", b'{"messages": [{"role": "user", "content": "rid=' + rid.encode() + b'"'
    if kind == "oversize":
        return "/v1/guard", {"messages": [{"role": "user", "content": "a" * 100_000}], "mode": "critique"}
    content: Any = text
    if kind == "media":
        bad = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(64)).decode()
        content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": bad}}]
    if kind == "chat":
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": text}]}
    return "/v1/guard", {"messages": [{"role": "user", "content": content}], "mode": "critique"}


def _judge(kind: str, rid: str, resp: httpx.Response) -> tuple[str, str]:
    """(category, problem) for one answer; see the module docstring for the rules."""
    try:
        data = resp.json()
    except ValueError:
        return "unanswered", f"{kind}: HTTP {resp.status_code} without a JSON body"
    if resp.status_code >= 400:
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict) or not err.get("type") or not err.get("message"):
            return "unanswered", f"{kind}: HTTP {resp.status_code} without an OpenAI-shaped error"
        if resp.status_code == 429:
            return "rejected", ""
        if resp.status_code == 504:
            return "timeouts", ""
        expected = {"malformed": 400, "oversize": 413, "chat": 502}
        if kind == "raise" or resp.status_code == expected.get(kind):
            return "blocked_by_error", ""
        return "unanswered", f"{kind}: unexpected HTTP {resp.status_code}: {err['message'][:80]}"
    if kind == "chat":
        content = data["choices"][0]["message"]["content"]
        return ("answered", "") if f"rid={rid}" in content else ("mixed_up", f"chat answer without rid={rid}")
    if data.get("error"):
        if data.get("safe"):
            return "safe_by_error", f"{kind}: safe although {data['error'][:60]}"
        return "blocked_by_error", ""
    if kind not in ("safe", "unsafe", "slow"):
        return "safe_by_error", f"{kind}: judged without an error"
    if f"rid={rid}" not in (data.get("critique") or ""):
        return "mixed_up", f"{kind}: rid={rid} got critique {str(data.get('critique'))[:40]!r}"
    if data["safe"] != (kind != "unsafe"):
        return "mixed_up", f"{kind}: wrong label"
    return "answered", ""


async def _one(client: httpx.AsyncClient, kind: str, rng: random.Random) -> Outcome:
    rid = uuid.uuid4().hex[:12]
    path, body = _body(kind, rid)
    send = (client.post(path, content=body, headers={"content-type": "application/json"}) if isinstance(body, bytes)
            else client.post(path, json=body))
    started = time.perf_counter()
    if kind == "abandon":
        task = asyncio.ensure_future(send)
        await asyncio.sleep(rng.uniform(0.005, 0.1))
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, httpx.HTTPError):
            pass
        return Outcome(kind, 0, time.perf_counter() - started)
    try:
        resp = await send
    except httpx.HTTPError as exc:
        return Outcome(kind, 0, time.perf_counter() - started, f"{kind}: {type(exc).__name__}")
    elapsed = time.perf_counter() - started
    category, problem = _judge(kind, rid, resp)
    return Outcome(kind, resp.status_code, elapsed, problem or category)


def _kind(rng: random.Random, settings: Settings) -> str:
    x = rng.random()
    for kind, share in MIX.items():
        if kind in FAULTS and not settings.faults:
            continue
        if x < share:
            return kind
        x -= share
    return "safe"


async def _phase(url: str, settings: Settings, load: float, duration_s: float, seed: int) -> PhaseResult:
    rate = load * settings.capacity
    result = PhaseResult(load=load, offered_rps=round(rate, 1))
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=settings.clients, max_keepalive_connections=settings.clients)
    busy = 0
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        async def run(kind: str) -> None:
            nonlocal busy
            busy += 1
            try:
                outcomes.append(await _one(client, kind, rng))
            finally:
                busy -= 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        i = hangs = 0
        while (now := loop.time() - start) < duration_s:
            due = i / rate
            if due > now:
                await asyncio.sleep(due - now)
            i += 1
            if busy >= settings.clients:  # every client is waiting: the generator, not the server, is full
                result.not_sent += 1
                continue
            hang = settings.hang and int(due / HANG_EVERY_S) > hangs
            hangs += hang
            tasks.append(asyncio.ensure_future(run("hang" if hang else _kind(rng, settings))))
        await asyncio.gather(*tasks)
    admitted, rejected = [], []
    for o in outcomes:
        result.requests += 1
        result.faults += o.kind in FAULTS
        if o.kind == "abandon":
            result.abandoned += 1
            continue
        category = o.problem if o.problem in PhaseResult.__dataclass_fields__ else "problem"
        if category == "problem" or o.status == 0:
            result.unanswered += 1
            result.problems.append(o.problem)
            continue
        setattr(result, category, getattr(result, category) + 1)
        if category in ("mixed_up", "safe_by_error"):
            result.problems.append(o.problem)
        if category == "rejected":
            rejected.append(o.latency_s)
        elif category in ("answered", "blocked_by_error") and o.kind in ("safe", "unsafe", "chat"):
            admitted.append(o.latency_s)
    result.p50_admitted_ms = round(_pct(admitted, 0.50), 1)
    result.p99_admitted_ms = round(_pct(admitted, 0.99), 1)
    result.p99_rejected_ms = round(_pct(rejected, 0.99), 1)
    result.max_rejected_ms = round(_pct(rejected, 1.0), 1)
    result.problems = result.problems[:10]
    return result


async def _unloaded(url: str, count: int) -> float:
    """p99 of one client sending plain checks one after another: the server's own latency."""
    rng = random.Random(1)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        for _ in range(3):
            await _one(client, "safe", rng)  # warm-up
        times = [(await _one(client, "safe", rng)).latency_s for _ in range(count)]
    return round(_pct(times, 0.99), 1)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _ready(server: ServerProcess, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            resp = httpx.get(f"{server.url}/healthz", timeout=2)
            if resp.status_code == 200 and resp.json().get("status") == "ready":
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def run_soak(settings: Settings, loads: list[float]) -> dict[str, Any]:
    os.environ.update(SOAK_BASE_MS=str(settings.base_ms), SOAK_ITEM_MS=str(settings.item_ms),
                      SOAK_HANG_S=str(settings.request_timeout_s * 1.5))
    limits = [] if settings.max_queued is None else ["--max-queued", str(settings.max_queued)]
    if settings.max_queue_delay_ms is not None:
        limits += ["--max-queue-delay-ms", str(settings.max_queue_delay_ms)]
    # the model's capacity (batch size and time) and the fault scenario's deadline; admission as shipped
    server = start_server(
        "--backend-factory", "tests.support.reliability_backends:soak", "--max-batch", str(settings.max_batch),
        "--request-timeout", str(settings.request_timeout_s), "--max-wait-ms", "5", *limits,
    )
    load_start = os.getloadavg()[0]
    try:
        unloaded = asyncio.run(_unloaded(server.url, settings.unloaded_requests))
        rss_start = _rss_mb(server.proc.pid)
        phases = [asdict(asyncio.run(_phase(server.url, settings, load, settings.duration_s, settings.seed + i)))
                  for i, load in enumerate(loads)]
        ready = _ready(server)
        try:  # the queue-delay bound the server admitted under (derived from its batch time by default)
            bound_s = httpx.get(f"{server.url}/healthz", timeout=5).json()["admission"]["queue_delay_bound_s"]
        except (httpx.HTTPError, ValueError, KeyError):
            bound_s = None
        rss_end = _rss_mb(server.proc.pid)
        log_tail = server.log()[-1500:]
    finally:
        server.stop()
    return {"settings": {**asdict(settings), "capacity_rps": round(settings.capacity, 1)},
            "unloaded_p99_ms": unloaded, "phases": phases, "alive_and_ready_after": ready,
            "queue_delay_bound_ms": None if bound_s is None else round(bound_s * 1000.0, 1),
            "rss_start_mb": round(rss_start, 1), "rss_growth_mb": round(rss_end - rss_start, 1),
            # the machine's 1-minute load average, before and after: figures from a busy shared
            # machine say more about its neighbours than about the server
            "loadavg": [round(load_start, 2), round(os.getloadavg()[0], 2), os.cpu_count()],
            "log_tail": log_tail}


def violations(report: dict[str, Any], *, timing: bool = True) -> list[str]:
    """Every invariant the run broke, as one line each (empty: the run held). ``timing=False``
    leaves out the latency targets (for CI on a shared machine: correctness only)."""
    out = []
    s = report["settings"]
    for p in report["phases"]:
        tag = f"{p['load']:g}x"
        for name in ("unanswered", "mixed_up", "safe_by_error"):
            if p[name]:
                out.append(f"{tag}: {p[name]} {name} ({'; '.join(p['problems'][:3])})")
        if not timing:
            continue
        if p["p99_rejected_ms"] > 50:
            out.append(f"{tag}: rejected p99 {p['p99_rejected_ms']} ms > 50 ms")
        # the latency target is for plain load (with faults, their neighbours wait on them too): an
        # admitted request waits at most the queue-delay bound, then its own batch
        target = 2 * report["unloaded_p99_ms"] + (report.get("queue_delay_bound_ms") or 0.0)
        if not s["faults"] and p["p99_admitted_ms"] > target:
            out.append(f"{tag}: admitted p99 {p['p99_admitted_ms']} ms > 2x unloaded {report['unloaded_p99_ms']} ms "
                       f"+ the {report.get('queue_delay_bound_ms')} ms bound")
        if p["not_sent"]:
            out.append(f"{tag}: the load generator could not send {p['not_sent']} requests (clients busy)")
    if not report["alive_and_ready_after"]:
        out.append("the server was not alive and ready after the run")
    if report["rss_growth_mb"] > s["rss_mb"]:
        out.append(f"RSS grew {report['rss_growth_mb']} MB > {s['rss_mb']} MB")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load", default="2,10", help="comma-separated multiples of capacity, one phase each")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    ap.add_argument("--clients", type=int, default=Settings.clients, help="most requests in flight at once")
    ap.add_argument("--hang", action="store_true", help="also inject batches that hang past the request timeout")
    ap.add_argument("--no-faults", action="store_true", help="plain checks only: the latency figures alone")
    ap.add_argument("--max-queue-delay-ms", type=float, default=None,
                    help="the server's --max-queue-delay-ms (default: not passed, the server's derived bound; "
                         "0: the queue bound alone)")
    ap.add_argument("--max-queued", type=int, default=None, help="the server's --max-queued (default: not passed)")
    ap.add_argument("--json", default=None, help="write the report here ('-' for stdout)")
    args = ap.parse_args(argv)
    settings = Settings(duration_s=args.duration, clients=args.clients, hang=args.hang, faults=not args.no_faults,
                        max_queue_delay_ms=args.max_queue_delay_ms, max_queued=args.max_queued)
    report = run_soak(settings, [float(x) for x in args.load.split(",")])
    report["violations"] = violations(report)
    text = json.dumps({k: v for k, v in report.items() if k != "log_tail"}, indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    for p in report["phases"]:
        print(f"{p['load']:g}x ({p['offered_rps']} req/s, {args.duration:g} s): {p['requests']} requests, "
              f"{p['faults']} faults, {p['rejected']} rejected, {p['blocked_by_error']} blocked by error, "
              f"{p['mixed_up']} mixed up, {p['timeouts']} timeouts, p99 admitted {p['p99_admitted_ms']} ms "
              f"(unloaded {report['unloaded_p99_ms']} ms), p99 rejected {p['p99_rejected_ms']} ms", file=sys.stderr)
    print(f"queue-delay bound {report['queue_delay_bound_ms']} ms; RSS growth {report['rss_growth_mb']} MB; "
          f"alive and ready after: {report['alive_and_ready_after']}; "
          f"load average {report['loadavg'][0]} -> {report['loadavg'][1]} on {report['loadavg'][2]} cores",
          file=sys.stderr)
    for line in report["violations"]:
        print(f"VIOLATION: {line}", file=sys.stderr)
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
