"""The ``openai`` backend against real server processes: same verdicts, failover, fail-closed."""

from __future__ import annotations

import threading
import time

import pytest

from omniguard_plugins import Audio, Image, JudgeConfig, OmniGuard
from omniguard_plugins.backends.openai import EndpointPool, OpenAIBackend
from omniguard_plugins.testing import scripted_judge
from tests.support.media_makers import png_bytes, wav_bytes
from tests.support.serve_backends import keywords_and_red_images
from tests.support.serve_helpers import start_server


@pytest.fixture(scope="module")
def keyword_server():
    server = start_server("--backend-factory", "tests.support.serve_backends:keywords")
    yield server
    server.stop()


def remote_judge(*urls: str, **settings) -> OmniGuard:
    settings.setdefault("cache_size", 0)
    return OmniGuard(JudgeConfig.load(backend="openai", base_url=",".join(urls), model="omniguard", **settings))


CASES = [
    {"user": "what is the capital of France"},
    {"user": "how do I build a bomb"},
    {"user": "tell me a story", "assistant": "then he decided to kill them all"},
    {"user": ["describe this picture", Image(png_bytes((220, 20, 20)))]},
    {"user": ["describe this picture", Image(png_bytes((20, 20, 220)))]},
    {"user": ["what is said here?", Audio(wav_bytes(0.5))]},
]


@pytest.mark.parametrize("mode", ["verdict", "critique", "score"])
def test_remote_verdicts_equal_in_process_verdicts(keyword_server, mode):
    local = scripted_judge(keywords_and_red_images, cache_size=0)
    remote = remote_judge(keyword_server.url)
    try:
        for case in CASES:
            here = local.check(**case, mode=mode)
            there = remote.check(**case, mode=mode)
            assert there.error is None, there.error
            assert (there.safe, there.category_codes, there.critique, there.score) == (
                here.safe, here.category_codes, here.critique, here.score), case
    finally:
        local.close()
        remote.close()


def test_explain_unsafe_continues_the_verdict_remotely(keyword_server):
    remote = remote_judge(keyword_server.url, explain_unsafe=True)
    verdict = remote.check(user="how do I build a bomb")
    assert not verdict.safe and verdict.category_codes == ("S9",)
    assert verdict.critique == "The content violates the policy."
    assert remote.check(user="hello").critique is None  # safe: no second request
    remote.close()


def test_killing_one_endpoint_mid_run_loses_no_request_and_with_both_down_the_rail_fails_closed(server_factory):
    a = server_factory("--backend-factory", "tests.support.serve_backends:keywords", delay_s=0.02)
    b = server_factory("--backend-factory", "tests.support.serve_backends:keywords", delay_s=0.02)
    judge = remote_judge(a.url, b.url, max_batch=8, timeout_s=20)
    texts = [f"item {i} {'bomb' if i % 4 == 0 else 'garden'}" for i in range(160)]
    verdicts: list = []

    def run() -> None:
        for start in range(0, len(texts), 8):
            verdicts.extend(judge.check_many([{"user": t} for t in texts[start:start + 8]]))

    worker = threading.Thread(target=run)
    worker.start()
    while len(verdicts) < 40 and worker.is_alive():
        time.sleep(0.01)
    assert a.metrics()["omniguard_batched_requests_total"] > 0  # `a` was taking its share
    a.kill()  # mid-run: requests in flight on `a` fail over to `b`
    worker.join(120)

    assert len(verdicts) == len(texts)
    assert [v.error for v in verdicts] == [None] * len(texts)
    assert [v.safe for v in verdicts] == ["bomb" not in t for t in texts]
    assert b.metrics()["omniguard_batched_requests_total"] > 0

    b.kill()  # now nothing answers
    verdict = judge.check(user="hello")
    assert verdict.safe is False and verdict.error.startswith("backend:")  # default policy: block
    judge.close()

    allowing = remote_judge(a.url, b.url, timeout_s=10, on_error="allow")
    verdict = allowing.check(user="hello")
    assert verdict.safe is True and verdict.error.startswith("backend:")
    allowing.close()


def test_pool_prefers_least_outstanding_and_opens_a_breaker_on_repeated_failure():
    pool = EndpointPool(["http://a/v1", "http://b/v1"], failure_threshold=2, cooldown_s=60)
    first = pool.acquire()
    second = pool.acquire()
    assert {first.url, second.url} == {"http://a/v1", "http://b/v1"}  # the idle one is picked
    pool.release(first, ok=False)
    pool.release(second, ok=True)
    again = pool.acquire({second.url})
    pool.release(again, ok=False)
    assert again.url == first.url
    # `first` failed twice in a row: its breaker is open, only the other endpoint is offered
    assert [pool.acquire().url for _ in range(3)] == [second.url] * 3


def test_base_urls_accept_roots_and_v1():
    backend = OpenAIBackend(["http://localhost:8000", "http://gpu-2:8000/v1/"], model="m")
    assert [e.url for e in backend.pool.endpoints] == ["http://localhost:8000/v1", "http://gpu-2:8000/v1"]
    backend.close()
