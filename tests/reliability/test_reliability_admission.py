"""Admission on arrival (issue 25): reservations in expected seconds of model work, in process and
at the server's edge; released when the answer is done or the client leaves; the connection cap."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from omniguard_plugins import OmniGuard
from omniguard_plugins.admission import Admission, held, units_for_body
from omniguard_plugins.doors import Ask
from omniguard_plugins.errors import OverloadedError
from omniguard_plugins.server import create_app
from omniguard_plugins.testing import ScriptedBackend, scripted_judge
from tests.support.burst import burst
from tests.support.reliability_helpers import KEYWORDS, Gated, until
from tests.support.serve_helpers import server_pool

BATCH_S = 0.2


def slow_judge(**settings) -> OmniGuard:
    return OmniGuard(backend=ScriptedBackend(KEYWORDS, delay_s=BATCH_S), model="scripted", cache_size=0, **settings)


async def test_600_concurrent_checks_shed_the_excess_at_once_and_admitted_ones_wait_at_most_the_bound_and_a_batch():
    judge = slow_judge()
    await judge.acheck(user="warm up: the batch time is measured")

    async def one(i: int):
        started = time.perf_counter()
        verdict = await judge.acheck(user=f"hello {i}")
        return verdict, time.perf_counter() - started

    results = await asyncio.gather(*(one(i) for i in range(600)))
    state = judge.admission.state()
    shed = [t for v, t in results if v.error]
    admitted = [t for v, t in results if not v.error]
    print(f"in process: {len(admitted)} admitted (max {max(admitted):.3f} s), {len(shed)} shed "
          f"(max {max(shed):.4f} s); "
          f"bound {state.queue_delay_bound_s:.3f} s, batch {state.batch_s:.3f} s")
    assert admitted and shed and len(admitted) + len(shed) == 600
    for verdict, _ in results:
        if verdict.error:  # a blocking verdict under on_error="block", saying why
            assert verdict.safe is False and verdict.error.startswith("overloaded:")
            assert verdict.details["error_kind"] == "overloaded"
        else:
            assert verdict.safe is True
    assert max(shed) < state.batch_s / 2  # refused on arrival: no caller waited for the model
    assert max(admitted) <= 1.25 * (state.queue_delay_bound_s + state.batch_s)
    assert state.in_flight == 0 and state.reserved_s == 0.0
    judge.close()


async def test_an_app_that_prefers_waiting_turns_refusals_off_with_max_queue_delay_0():
    judge = OmniGuard(backend=ScriptedBackend(KEYWORDS, delay_s=0.02), model="scripted", cache_size=0,
                      max_batch=2, max_queue_delay_s=0)
    verdicts = await asyncio.gather(*(judge.acheck(user=f"hello {i}") for i in range(100)))
    assert all(v.safe and not v.error for v in verdicts)
    assert judge.admission.refused == 0 and judge.admission.admitted == 100
    judge.close()


def test_past_the_reservation_check_blocks_and_shed_raise_raises_then_both_pass_once_released():
    judge = scripted_judge(KEYWORDS, max_batch=1, cache_size=0, max_queue_delay_s=1.0)
    held_now = []
    while True:  # hold reservations as arriving requests would, until the next one is refused
        try:
            held_now.append(judge.admission.reserve())
        except OverloadedError:
            break
    assert len(held_now) >= 1
    blocked = judge.check(user="hello")
    assert blocked.safe is False and blocked.details["error_kind"] == "overloaded"
    with pytest.raises(OverloadedError) as info:
        judge.check(user="hello", shed="raise")
    assert info.value.retry_after_s >= 1
    assert [v.details["error_kind"] for v in judge.check_many([Ask(user="a"), Ask(user="b")])] == ["overloaded"] * 2
    for reservation in held_now:
        reservation.release()
    assert judge.check(user="hello").safe is True
    assert judge.admission.state().in_flight == 0
    judge.close()


def test_a_check_made_under_a_held_reservation_does_not_reserve_again():
    seen = []
    judge = scripted_judge(lambda p, m: (seen.append(judge.admission.state().in_flight), KEYWORDS(p, m))[1],
                           cache_size=0)
    reservation = judge.admission.reserve(units_for_body(100))
    with reservation, reservation.current():
        assert held() is reservation
        judge.check(user="hello")
        asyncio.run(asyncio.to_thread(judge.check, user="from a worker thread started here"))  # as a route's
    assert held() is None
    assert seen == [1, 1]  # the server's one reservation, not one more per check
    judge.check(user="on its own")
    assert seen[-1] == 1 and judge.admission.state().in_flight == 0
    judge.close()


def test_the_weight_of_a_body_and_the_derived_bound():
    assert units_for_body(0) == units_for_body(4096) == 1.0
    assert 1.0 < units_for_body(40_000) < 3.0 and units_for_body(10**9) == 8.0
    admission = Admission(max_batch=16, timeout_s=120.0)
    assert admission.bound_s() == 1.0  # nothing measured: twice the assumed 0.5 s batch
    admission.observe(16, 0.25)
    assert admission.bound_s() == 0.5 and admission.unit_s == 0.25 / 16
    admission.observe(16, 10.0)
    assert admission.bound_s() == pytest.approx(2 * (0.8 * 0.25 + 0.2 * 10.0))
    assert Admission(max_batch=1, timeout_s=4.0, max_queue_delay_s=None).bound_s() == 1.0  # a quarter of the timeout
    assert Admission(max_batch=1, max_queue_delay_s=0).bound_s() == 0.0
    assert Admission(max_batch=1, max_queue_delay_s=0.2).bound_s(0.7) == 0.7  # the server's own setting wins


async def test_the_server_reserves_on_arrival_shows_it_and_gives_it_back_when_the_client_leaves():
    handler = Gated()
    judge = scripted_judge(handler, max_batch=1, cache_size=0)
    transport = httpx.ASGITransport(app=create_app(judge), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://guard", timeout=10) as c:
        running = asyncio.create_task(c.post("/v1/guard", json={"messages": [{"role": "user", "content": "one"}]}))
        await until(lambda: len(handler.seen) == 1)
        health = (await c.get("/healthz")).json()
        assert health["admission"]["in_flight"] == 1 and health["admission"]["reserved_s"] > 0
        metrics = (await c.get("/metrics")).text
        assert "omniguard_reservations 1.0" in metrics and "omniguard_queue_delay_bound_seconds" in metrics
        gone = asyncio.create_task(c.post("/v1/guard", json={"messages": [{"role": "user", "content": "two"}]}))
        await until(lambda: judge.admission.state().in_flight == 2)
        gone.cancel()  # the client leaves: its reservation is given back while the model is still busy
        await until(lambda: judge.admission.state().in_flight == 1)
        handler.gate.set()
        assert (await running).status_code == 200
        assert (await c.get("/healthz")).json()["admission"]["in_flight"] == 0
    judge.close()


async def test_a_burst_past_the_server_refuses_before_the_body_is_read():
    handler = Gated()
    judge = scripted_judge(handler, max_batch=1, cache_size=0)
    app = create_app(judge, max_queue_delay_s=0.5)  # 0.5 s bound + the assumed 0.5 s batch: 2 requests
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://guard", timeout=10) as c:
        first = [asyncio.create_task(c.post("/v1/guard", json={"messages": [{"role": "user", "content": f"{i}"}]}))
                 for i in range(2)]
        await until(lambda: judge.admission.state().in_flight == 2)
        refused = await c.post("/v1/guard", content=b'{"messages": [', headers={"content-type": "application/json"})
        # refused on arrival: the broken body was never read, so it is a 429, not a 400
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "queue-delay bound" in refused.json()["error"]["message"]
        handler.gate.set()
        assert [(await t).status_code for t in first] == [200, 200]
    judge.close()


def test_a_connection_flood_past_the_cap_is_answered_503_by_the_protocol():
    with server_pool() as start:
        server = start("--backend-factory", "tests.support.serve_backends:echo", "--max-connections", "8", delay_s=0.3)
        answers = asyncio.run(burst(server.port, 60))
        after = asyncio.run(burst(server.port, 1))
    assert all(a.status for a in answers), [a.problem for a in answers if not a.status][:3]  # every one answered
    assert 503 in {a.status for a in answers}
    assert [a.status for a in after] == [200]  # and the server serves on


def test_a_body_still_arriving_gives_its_reservation_back_and_reserves_again_when_it_is_all_here():
    import json
    import socket

    body = json.dumps({"messages": [{"role": "user", "content": "slowly now"}], "mode": "critique"}).encode()
    with server_pool() as start:
        server = start("--backend-factory", "tests.support.serve_backends:echo")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/guard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:10])
            deadline = time.monotonic() + 10
            while httpx.get(f"{server.url}/healthz", timeout=5).json()["admission"]["in_flight"] != 1:
                assert time.monotonic() < deadline  # reserved on arrival, before the body
                time.sleep(0.02)
            while httpx.get(f"{server.url}/healthz", timeout=5).json()["admission"]["in_flight"] != 0:
                assert time.monotonic() < deadline  # given back while the body trickles
                time.sleep(0.05)
            sock.sendall(body[10:])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"echo[" in answer
        assert httpx.get(f"{server.url}/healthz", timeout=5).json()["admission"]["in_flight"] == 0
