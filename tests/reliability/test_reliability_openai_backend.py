"""The openai backend against endpoints that misbehave: killed mid-request, 429/500 with
Retry-After, slow, garbage, all down. Every failure fails closed; breakers recover.

The endpoints are small scripted HTTP servers on loopback: each answers its next request the
way its script says, then like a healthy OpenAI-compatible server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from omniguard_plugins import OmniGuard
from omniguard_plugins.backends.openai import OpenAIBackend

SAFE = "- Safety Assessment: safe\n- Categories: None"


class Endpoint:
    """``script`` is a list of behaviours for the next requests: "ok", "kill", "garbage",
    "no-choices", ("status", code, retry_after), ("slow", seconds). Empty: "ok"."""

    def __init__(self) -> None:
        self.script: list = []
        self.seen: list[float] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                endpoint.seen.append(time.monotonic())
                step = endpoint.script.pop(0) if endpoint.script else "ok"
                if step == "kill":  # the process dies mid-request: no status line at all
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                if isinstance(step, tuple) and step[0] == "slow":
                    time.sleep(step[1])
                    step = "ok"
                if isinstance(step, tuple) and step[0] == "status":
                    _, code, retry_after = step
                    body = json.dumps({"error": {"message": "busy", "type": "server_error"}}).encode()
                    self.send_response(code)
                    if retry_after is not None:
                        self.send_header("Retry-After", str(retry_after))
                    return self._body(body)
                if step == "garbage":
                    return self._ok(b"<html>502 upstream</html>")
                if step == "no-choices":
                    return self._ok(json.dumps({"object": "chat.completion", "choices": []}).encode())
                content = SAFE.split("- Safety Assessment:", 1)[1]
                return self._ok(json.dumps({"choices": [{"message": {"content": content}}],
                                            "usage": {"completion_tokens": 3}}).encode())

            def _ok(self, body: bytes) -> None:
                self.send_response(200)
                self._body(body)

            def _body(self, body: bytes) -> None:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def endpoints() -> Iterator:
    made: list[Endpoint] = []

    def make(n: int = 1) -> list[Endpoint]:
        new = [Endpoint() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for e in made:
        e.stop()


def judge_for(urls: list[str], **kw) -> OmniGuard:
    backend = OpenAIBackend(urls, model="guard", timeout_s=kw.pop("timeout_s", 5.0), backoff_s=0.01,
                            cooldown_s=kw.pop("cooldown_s", 0.3), failure_threshold=2, **kw)
    return OmniGuard(backend=backend, model="guard", cache_size=0, max_wait_ms=1)


def test_an_endpoint_killed_mid_request_is_retried_on_the_other(endpoints):
    a, b = endpoints(2)
    a.script = ["kill"] * 5
    judge = judge_for([a.url, b.url])
    verdicts = [judge.check(user=f"hello {i}") for i in range(4)]
    assert all(v.safe and v.error is None for v in verdicts)
    assert len(b.seen) >= 4
    judge.close()


@pytest.mark.parametrize("code", [429, 500, 503])
def test_a_busy_endpoint_is_retried_after_its_retry_after(endpoints, code):
    [a] = endpoints(1)
    a.script = [("status", code, 1)]
    judge = judge_for([a.url])
    verdict = judge.check(user="hello")
    assert verdict.safe and verdict.error is None
    assert len(a.seen) == 2 and a.seen[1] - a.seen[0] >= 0.95  # it waited as told
    judge.close()


def test_retry_after_past_the_deadline_fails_closed_at_once(endpoints):
    [a] = endpoints(1)
    a.script = [("status", 429, 30)]
    judge = judge_for([a.url], timeout_s=2.0)
    started = time.monotonic()
    verdict = judge.check(user="hello")
    assert not verdict.safe and verdict.error.startswith("backend:") and "HTTP 429" in verdict.error
    assert time.monotonic() - started < 1.5  # no pointless wait for an answer that cannot come in time
    judge.close()


def test_a_slow_endpoint_times_out_and_fails_closed(endpoints):
    [a] = endpoints(1)
    a.script = [("slow", 3.0)] * 3
    judge = judge_for([a.url], timeout_s=0.5, retries=0)
    verdict = judge.check(user="hello")
    assert not verdict.safe and verdict.error
    judge.close()


@pytest.mark.parametrize("answer", ["garbage", "no-choices"])
def test_garbage_answers_fail_closed(endpoints, answer):
    [a] = endpoints(1)
    a.script = [answer] * 10
    judge = judge_for([a.url], retries=1)
    verdict = judge.check(user="hello")
    assert not verdict.safe and verdict.error
    assert "\n" not in verdict.error
    judge.close()


def test_all_replicas_down_fail_closed_fast_and_breakers_recover(endpoints):
    a, b = endpoints(2)
    a.script = [("status", 500, None)] * 2  # two failures each open both breakers
    b.script = [("status", 500, None)] * 2
    judge = judge_for([a.url, b.url], retries=3, cooldown_s=0.3)
    down = [judge.check(user=f"hi {i}") for i in range(3)]
    assert all(not v.safe and v.error.startswith("backend:") for v in down)
    assert "circuit is open" in down[-1].error  # refused at once, no request sent
    assert (len(a.seen), len(b.seen)) == (2, 2)
    time.sleep(0.4)  # the cooldown passes; a probe finds them healthy again
    # ties between idle endpoints are broken at random: check until both have been probed
    up = []
    while len(up) < 50 and not (len(a.seen) > 2 and len(b.seen) > 2):
        up.append(judge.check(user=f"back {len(up)}"))
    assert len(a.seen) > 2 and len(b.seen) > 2
    assert all(v.safe and v.error is None for v in up)
    assert all(e.failures == 0 for e in judge.backend.pool.endpoints)
    judge.close()
