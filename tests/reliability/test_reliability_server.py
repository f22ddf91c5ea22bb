"""The server in process under abuse and overload: fast 429s with Retry-After, per-token limits,
/healthz states, request caps, one-line errors, and nothing of the host disclosed."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from omniguard_plugins import OmniGuard
from omniguard_plugins.answer_format import write_answer
from omniguard_plugins.errors import OverloadedError
from omniguard_plugins.server import create_app
from omniguard_plugins.testing import ScriptedBackend, scripted_judge
from tests.support.reliability_helpers import KEYWORDS, Gated, until

WAIT = 10.0


def user(content):
    return {"messages": [{"role": "user", "content": content}]}


def client_for(app) -> httpx.AsyncClient:
    # a real server logs an unhandled exception after answering 500; here it must not raise
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://guard", timeout=WAIT)


async def test_a_full_queue_answers_429_with_retry_after_in_milliseconds_and_admitted_work_finishes():
    handler = Gated()
    judge = scripted_judge(handler, max_queued=2, max_batch=1, cache_size=0)
    async with client_for(create_app(judge)) as c:
        running = asyncio.create_task(c.post("/v1/guard", json=user("first")))
        await until(lambda: judge.batcher.health().running_s > 0)
        queued = [asyncio.create_task(c.post("/v1/guard", json=user(f"queued {i}"))) for i in range(2)]
        await until(lambda: judge.batcher.queue_depth == 2)

        started = time.perf_counter()
        refused = await c.post("/v1/guard", json=user("one too many"))
        elapsed = time.perf_counter() - started
        assert refused.status_code == 429 and elapsed < 0.05
        assert int(refused.headers["retry-after"]) >= 1
        err = refused.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "rate_limit_error" and err["code"] == "overloaded" and "\n" not in err["message"]
        chat = await c.post("/v1/chat/completions", json=user("also refused"))
        assert chat.status_code == 429

        health = await c.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "overloaded"
        handler.gate.set()
        answers = await asyncio.gather(running, *queued)
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert all(a.json()["error"] is None for a in answers)
        after = (await c.get("/healthz")).json()
        assert {k: after[k] for k in ("status", "queue_depth")} == {"status": "ready", "queue_depth": 0}
        # every reservation was given back once its response was done
        assert after["admission"]["in_flight"] == 0 and after["admission"]["reserved_s"] == 0.0
        assert set(after) == {"status", "queue_depth", "admission"}
        metrics = (await c.get("/metrics")).text
    assert "one too many" not in " ".join(handler.seen)
    assert 'omniguard_health{state="ready"} 1.0' in metrics
    judge.close()


async def test_a_verdict_shed_inside_the_judge_is_a_429_not_a_verdict(monkeypatch):
    judge = scripted_judge(KEYWORDS, cache_size=0)

    def refuse(request):
        raise OverloadedError("the judge is overloaded (test); retry later", retry_after_s=3)

    monkeypatch.setattr(judge.batcher, "submit", refuse)  # health still says ready: the race
    async with client_for(create_app(judge)) as c:
        resp = await c.post("/v1/guard", json=user("hello"))
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "overloaded"
    judge.close()


async def test_each_token_has_its_own_concurrency_limit():
    handler = Gated()
    judge = scripted_judge(handler, max_batch=1, cache_size=0)
    app = create_app(judge, tokens=["token-aaaa-1", "token-bbbb-2"], max_concurrency_per_client=1)
    a = {"Authorization": "Bearer token-aaaa-1"}
    b = {"Authorization": "Bearer token-bbbb-2"}
    async with client_for(app) as c:
        first = asyncio.create_task(c.post("/v1/guard", json=user("a1"), headers=a))
        await until(lambda: len(handler.seen) == 1)
        second = await c.post("/v1/guard", json=user("a2"), headers=a)
        assert second.status_code == 429 and "this client has 1 requests in flight" in second.json()["error"]["message"]
        other = asyncio.create_task(c.post("/v1/guard", json=user("b1"), headers=b))
        await until(lambda: judge.batcher.queue_depth == 1)  # the other token got in
        assert (await c.post("/v1/guard", json=user("x"), headers={"Authorization": "Bearer nope"})).status_code == 401
        handler.gate.set()
        assert (await first).status_code == 200 and (await other).status_code == 200
        again = await c.post("/v1/guard", json=user("a3"), headers=a)  # its slot was given back
        assert again.status_code == 200
    judge.close()


async def test_healthz_reads_broken_while_the_backend_fails_every_request_and_ready_after():
    failing = {"on": True}

    def handler(prompt, media):
        if failing["on"]:
            raise RuntimeError("device lost")
        return KEYWORDS(prompt, media)

    judge = scripted_judge(handler, cache_size=0, max_batch=1)
    async with client_for(create_app(judge)) as c:
        for _ in range(5):
            body = (await c.post("/v1/guard", json=user("hi"))).json()
            assert body["safe"] is False and body["error"].startswith("backend:")  # fails closed
        health = await c.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "broken"
        assert "failed the last 5 requests" in health.json()["reason"]
        failing["on"] = False
        assert (await c.post("/v1/guard", json=user("hi"))).json()["safe"] is True
        assert (await c.get("/healthz")).status_code == 200
    judge.close()


@pytest.mark.parametrize("route", ["/v1/guard", "/v1/chat/completions"])
async def test_too_much_text_is_refused_with_413_before_the_model(route):
    judge = scripted_judge(KEYWORDS, cache_size=0)
    size = 100_000 if route == "/v1/guard" else 2_000_000
    async with client_for(create_app(judge)) as c:
        started = time.perf_counter()
        resp = await c.post(route, json=user([{"type": "text", "text": "a" * size}]))
        elapsed = time.perf_counter() - started
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "text_too_large"
    assert f"{size} characters" in resp.json()["error"]["message"]
    assert elapsed < 1.0  # the bound the issue names; it takes milliseconds
    assert judge.backend.calls == 0
    judge.close()


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b'{"messages": [', {"content-type": "application/json"}, 400, "not valid JSON: Expecting value at line 1"),
        (b'{"messages": [{"role": "user", "content": "hi"},]}', {}, 400, "not valid JSON"),
        (b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 400, "nests deeper than 32 levels"),
        (b"messages=hi", {"content-type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
        (json.dumps(user([{"type": "text", "text": "x"}] * 1000)).encode(), {}, 413, "1000 content parts"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}] * 1000}).encode(), {}, 400, "at most 256"),
        (json.dumps({**user("hi"), "policy": {"categories": 5}}).encode(), {}, 400, "'categories' must be a list"),
        (json.dumps({**user("hi"), "policy": {"drop": 5}}).encode(), {}, 400, "'drop' must be a list"),
        (json.dumps({**user("hi"), "policy": {"rename": "x"}}).encode(), {}, 400, "'rename' must map"),
        (json.dumps({**user("hi"), "policy": [5]}).encode(), {}, 400, "a category needs a name"),
    ],
)
async def test_bad_requests_say_what_is_wrong_in_one_line_and_never_reach_the_model(body, headers, status, says):
    judge = scripted_judge(KEYWORDS, cache_size=0)
    async with client_for(create_app(judge)) as c:
        resp = await c.post("/v1/guard", content=body, headers={"content-type": "application/json", **headers})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert says in err["message"] and "\n" not in err["message"]
    if "policy" in body.decode():
        assert err["code"] == "config"
    assert judge.backend.calls == 0
    judge.close()


async def test_internal_errors_reach_clients_as_one_line_without_internals(monkeypatch):
    def allocator(prompt, media):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 27488016138630 bytes. "
                           "Error code 12 (Cannot allocate memory)\n  File \"/opt/secret/torch.py\", line 3")

    judge = scripted_judge(allocator, cache_size=0)
    app = create_app(judge)

    async def broken_route(req):
        raise ValueError("secret detail /etc/omniguard/key")

    async with client_for(app) as c:
        raw = await c.post("/v1/chat/completions", json=user("hi"))
        verdict = (await c.post("/v1/guard", json=user("hi"))).json()
        monkeypatch.setattr(app.state.serving, "guard", broken_route)
        crash = await c.post("/v1/guard", json=user("hi"))
    assert raw.status_code == 502
    for text in (raw.json()["error"]["message"], verdict["error"], crash.json()["error"]["message"]):
        assert "27488016138630" not in text and "Allocator" not in text and "/opt/secret" not in text
        assert "\n" not in text and "/etc/omniguard" not in text
    assert "out of memory" in raw.json()["error"]["message"] and verdict["safe"] is False
    assert crash.status_code == 500
    assert crash.json()["error"]["message"] == "internal error (ValueError); see the server log"
    judge.close()


async def test_healthz_and_the_default_model_id_disclose_no_host_path(tmp_path):
    checkpoint = tmp_path / "secret-team" / "omniguard-3b-ft"
    checkpoint.mkdir(parents=True)
    judge = OmniGuard(backend=ScriptedBackend(KEYWORDS), model=str(checkpoint), cache_size=0)
    async with client_for(create_app(judge)) as c:
        health = (await c.get("/healthz")).text
        models = (await c.get("/v1/models")).json()
        completion = (await c.post("/v1/chat/completions", json=user("hi"))).json()
    assert str(tmp_path) not in health and "/" not in health
    assert [m["id"] for m in models["data"]] == ["omniguard-3b-ft", "omniguard-judge"]
    assert completion["model"] == "omniguard-3b-ft"
    judge.close()


async def test_a_client_that_goes_away_has_its_queued_work_dropped():
    handler = Gated()
    judge = scripted_judge(handler, max_batch=1, cache_size=0)
    app = create_app(judge)
    async with client_for(app) as c:
        first = asyncio.create_task(c.post("/v1/guard", json=user("running")))
        await until(lambda: len(handler.seen) == 1)
        gone = asyncio.create_task(c.post("/v1/chat/completions", json=user("abandoned")))
        await until(lambda: judge.batcher.queue_depth == 1)
        gone.cancel()  # the client disconnects while its request waits for the model
        await until(lambda: judge.batcher.queue_depth == 0)  # dropped while the model is still busy
        assert judge.batcher.stats.cancelled == 1
        handler.gate.set()
        assert (await first).status_code == 200
        assert (await c.post("/v1/guard", json=user("after"))).status_code == 200
    assert not any("abandoned" in p for p in handler.seen)
    judge.close()


def test_answers_for_a_ready_judge_are_unchanged():
    """The gate adds checks, not differences: a normal request is answered as before."""
    judge = scripted_judge(lambda p, m: write_answer(safe=False, categories=["S9"], critique="x"), cache_size=0)
    from fastapi.testclient import TestClient

    with TestClient(create_app(judge)) as c:
        body = c.post("/v1/guard", json=user("hi")).json()
    assert body["safe"] is False and body["categories"] == ["S9"]
    judge.close()
