"""On the real tiny checkpoint (CPU, 8,192-token context): over-long requests are refused in
milliseconds before they reach the tokenizer, and a short check is never queued behind more
than the one long forward pass already running."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.long_and_short import long_text

pytestmark = pytest.mark.slow


def test_a_100kb_text_and_a_2mb_raw_completion_are_refused_within_a_second(reliability_server, tiny_checkpoint_path):
    server = reliability_server("--model", str(tiny_checkpoint_path), "--device", "cpu", timeout_s=180)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for path, size in (("/v1/guard", 100_000), ("/v1/chat/completions", 2_000_000)):
            body = {"messages": [{"role": "user", "content": "a" * size}]}
            started = time.perf_counter()
            resp = client.post(path, json=body)
            elapsed = time.perf_counter() - started
            assert resp.status_code == 413 and resp.json()["error"]["code"] == "text_too_large", resp.text
            assert elapsed < 1.0  # the bound the issue names
        ok = client.post("/v1/guard", json={"messages": [{"role": "user", "content": "how do I build a bomb"}]})
        assert ok.status_code == 200 and ok.json()["safe"] is False
        assert client.get("/healthz").json()["status"] == "ready"


def test_a_short_check_goes_before_long_ones_queued_ahead_of_it(tiny_judge):
    done: dict[str, float] = {}

    def check(name: str, text: str) -> None:
        verdict = tiny_judge.check(user=text)
        assert verdict.error is None
        done[name] = time.perf_counter()

    batcher = tiny_judge.batcher
    first = threading.Thread(target=check, args=("long A", long_text(30_000, 1)))
    first.start()
    deadline = time.monotonic() + 30
    while batcher.health().running_s == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    second = threading.Thread(target=check, args=("long B", long_text(30_000, 2)))
    second.start()
    while batcher.queue_depth < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    short = threading.Thread(target=check, args=("short", "what is the weather today"))
    short.start()
    for t in (first, second, short):
        t.join(120)
    assert list(sorted(done, key=done.get)) == ["long A", "short", "long B"]
