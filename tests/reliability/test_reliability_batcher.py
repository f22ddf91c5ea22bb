"""The micro-batcher under overload and faults: bounded queue, short work first, dead work
dropped, a supervised worker, and health that tells ready, overloaded and broken apart."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from omniguard_plugins.backends.base import GenerationRequest, GenerationResult
from omniguard_plugins.batching import MicroBatcher, media_nbytes
from omniguard_plugins.config import JudgeConfig
from omniguard_plugins.errors import BackendError, JudgeTimeout, OverloadedError
from omniguard_plugins.media import DecodedAudio

ANSWER = "- Safety Assessment: safe\n- Categories: None"
WAIT = 10.0  # generous bound on waits that finish in milliseconds


class GatedBackend:
    """Records every batch (as prompts); blocks while ``gate`` is clear; can be told to fail."""

    model_id = "gated"
    prepares_in_caller = False

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.batches: list[list[str]] = []
        self.fail_on: set[str] = set()
        self.error: BaseException = RuntimeError("boom")

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return request

    def generate(self, requests):
        self.batches.append([r.prompt for r in requests])
        self.started.set()
        assert self.gate.wait(WAIT)
        if any(r.prompt in self.fail_on for r in requests):
            raise self.error
        return [GenerationResult(text=f"{ANSWER} [{r.prompt[:12]}]") for r in requests]

    def close(self) -> None:
        pass


def req(prompt: str, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kw)


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend()


def occupy(batcher: MicroBatcher, backend: GatedBackend) -> Future:
    """Hold the worker inside generate, so what is submitted next stays queued."""
    backend.gate.clear()
    backend.started.clear()
    fut = batcher.submit(req("occupier"))
    assert backend.started.wait(WAIT)
    return fut


def test_a_full_queue_refuses_at_once_and_every_admitted_request_is_answered(backend):
    batcher = MicroBatcher(backend, max_batch=4, max_wait_ms=0, max_queued=3)
    first = occupy(batcher, backend)
    admitted = [batcher.submit(req(f"q{i}")) for i in range(3)]
    started = time.perf_counter()
    with pytest.raises(OverloadedError, match="max_queued=3") as info:
        batcher.submit(req("one too many"))
    assert time.perf_counter() - started < 0.05  # refused in milliseconds, not after a timeout
    assert info.value.kind == "overloaded" and info.value.retry_after_s >= 1
    assert batcher.stats.rejected == 1
    assert batcher.health().state == "overloaded"
    backend.gate.set()
    assert [f.result(WAIT).text.endswith(f"[q{i}]") for i, f in enumerate(admitted)] == [True] * 3
    assert first.result(WAIT).text.endswith("[occupier]")
    assert batcher.health().state == "ready"
    assert "one too many" not in sum(backend.batches, [])
    batcher.close()


def test_the_media_bound_counts_decoded_bytes(backend):
    audio = DecodedAudio(np.zeros(16_000, dtype=np.float32), "sha", 16_000)  # 64 000 bytes
    assert media_nbytes(req("a", media=(audio,))) == 64_000
    batcher = MicroBatcher(backend, max_wait_ms=0, max_queued=100, max_queued_media_bytes=100_000)
    occupy(batcher, backend)
    ok = batcher.submit(req("with audio", media=(audio,)))
    with pytest.raises(OverloadedError, match="max_queued_media_bytes=100000"):
        batcher.submit(req("more audio", media=(audio,)))
    text_only = batcher.submit(req("text only"))  # text is still admitted
    assert batcher.health().queued_media_bytes == 64_000
    backend.gate.set()
    assert ok.result(WAIT) and text_only.result(WAIT)
    assert batcher.health().queued_media_bytes == 0
    batcher.close()


def test_short_requests_move_past_a_long_one_and_long_ones_run_alone(backend):
    batcher = MicroBatcher(backend, max_batch=8, max_wait_ms=0, long_cost=5000)
    occupy(batcher, backend)
    long_a = batcher.submit(req("LONG-A " + "x" * 6000))
    long_b = batcher.submit(req("LONG-B " + "x" * 6000))
    shorts = [batcher.submit(req(f"short {i}")) for i in range(3)]
    backend.gate.set()
    for f in (long_a, long_b, *shorts):
        f.result(WAIT)
    batches = [[p.split()[0] + (p.split()[1] if p.startswith("short") else "") for p in b] for b in backend.batches[1:]]
    # the three short requests, queued last, ran first and together; each long one ran alone
    assert batches == [["short0", "short1", "short2"], ["LONG-A"], ["LONG-B"]]
    batcher.close()


def test_a_long_request_is_passed_over_a_bounded_number_of_times(backend):
    batcher = MicroBatcher(backend, max_batch=1, max_wait_ms=0, long_cost=500)
    occupy(batcher, backend)
    long = batcher.submit(req("LONG " + "x" * 900))
    shorts = [batcher.submit(req(f"s{i}")) for i in range(10)]
    backend.gate.set()
    long.result(WAIT)
    for f in shorts:
        f.result(WAIT)
    order = [b[0].split()[0] for b in backend.batches[1:]]
    assert order.index("LONG") == 4  # four short batches went ahead, then it ran: no starvation
    batcher.close()


def test_cancelled_requests_never_reach_the_backend(backend):
    batcher = MicroBatcher(backend, max_wait_ms=0, max_queued=2)
    occupy(batcher, backend)
    gone = [batcher.submit(req(f"gone {i}")) for i in range(2)]
    for f in gone:
        assert f.cancel()  # the caller timed out or went away
    kept = batcher.submit(req("kept"))  # the cancelled ones free their slots at once
    backend.gate.set()
    assert kept.result(WAIT)
    assert not any(p.startswith("gone") for p in sum(backend.batches, []))
    assert batcher.stats.cancelled == 2
    batcher.close()


def test_requests_that_waited_past_the_deadline_fail_without_running(backend):
    batcher = MicroBatcher(backend, max_wait_ms=0, max_queue_wait_s=0.05)
    occupy(batcher, backend)
    stale = batcher.submit(req("stale"))
    time.sleep(0.2)
    backend.gate.set()
    with pytest.raises(JudgeTimeout, match="queue"):
        stale.result(WAIT)
    assert "stale" not in sum(backend.batches, [])
    assert batcher.stats.expired == 1
    batcher.close()


def test_one_bad_request_fails_alone_with_a_one_line_error_and_no_allocator_text(backend):
    backend.error = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                 "27488016138630 bytes.\nError code 12")
    backend.fail_on = {"huge"}
    batcher = MicroBatcher(backend, max_batch=4, max_wait_ms=50)
    futures = [batcher.submit(req(p)) for p in ("a", "huge", "b")]
    assert futures[0].result(WAIT) and futures[2].result(WAIT)
    with pytest.raises(BackendError) as info:
        futures[1].result(WAIT)
    message = str(info.value)
    assert "\n" not in message and "27488016138630" not in message and "Allocator" not in message
    assert "out of memory" in message
    batcher.close()


def test_a_dead_worker_fails_its_batch_fast_and_is_restarted(backend, monkeypatch):
    batcher = MicroBatcher(backend, max_wait_ms=0)
    real = batcher._run_group
    calls = {"n": 0}

    def dies_once(group):
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("a library called sys.exit in the worker")
        real(group)

    monkeypatch.setattr(batcher, "_run_group", dies_once)
    lost = batcher.submit(req("in flight"))
    with pytest.raises(BackendError, match="worker died"):
        lost.result(WAIT)  # an answer, not a hang until the caller's timeout
    assert batcher.submit(req("after")).result(WAIT).text.endswith("[after]")
    assert batcher.stats.worker_restarts == 1
    assert batcher.health().state == "ready"
    batcher.close()


def test_a_worker_that_keeps_dying_is_reported_broken_and_refuses_work(backend, monkeypatch):
    batcher = MicroBatcher(backend, max_wait_ms=0)
    monkeypatch.setattr(batcher, "_run_group", lambda group: (_ for _ in ()).throw(SystemExit("dead")))
    for _ in range(6):
        with pytest.raises(BackendError):
            batcher.submit(req("x")).result(WAIT)
    health = batcher.health()
    assert health.state == "broken" and "restart the process" in health.reason
    with pytest.raises(BackendError, match="died"):
        batcher.submit(req("refused"))
    batcher.close()


def test_a_hung_backend_is_reported_broken_and_new_work_fails_fast(backend):
    batcher = MicroBatcher(backend, max_wait_ms=0, stuck_after_s=0.1)
    hung = occupy(batcher, backend)
    time.sleep(0.25)
    health = batcher.health()
    assert health.state == "broken" and "stuck" in health.reason and health.running_s > 0.1
    with pytest.raises(BackendError, match="stuck"):
        batcher.submit(req("new"))
    backend.gate.set()  # it recovers
    assert hung.result(WAIT)
    assert batcher.health().state == "ready"
    batcher.close()


def test_a_backend_failing_every_request_reads_broken_until_one_succeeds(backend):
    backend.fail_on = {"down"}
    batcher = MicroBatcher(backend, max_batch=1, max_wait_ms=0)
    for _ in range(5):
        with pytest.raises(BackendError):
            batcher.submit(req("down")).result(WAIT)
    assert batcher.health().state == "broken"
    assert batcher.submit(req("up")).result(WAIT)
    assert batcher.health().state == "ready"
    batcher.close()


def test_close_fails_what_is_still_queued(backend):
    batcher = MicroBatcher(backend, max_wait_ms=0)
    occupy(batcher, backend)
    queued = batcher.submit(req("queued"))
    batcher.close(timeout=0.1)
    with pytest.raises(BackendError, match="closed"):
        queued.result(WAIT)
    backend.gate.set()
    assert batcher.health().state == "broken"
    assert isinstance(batcher.submit(req("late")).exception(WAIT), BackendError)


def test_from_config_takes_the_queue_bounds_and_the_timeout():
    config = JudgeConfig(max_batch=3, max_queued=7, max_queued_media_bytes=1000, timeout_s=9.0)
    batcher = MicroBatcher.from_config(GatedBackend(), config)
    assert (batcher.max_batch, batcher.max_queued, batcher.max_queued_media_bytes) == (3, 7, 1000)
    assert batcher.max_queue_wait_s == 9.0 and batcher.stuck_after_s == 9.0


def test_queue_bounds_come_from_the_environment_and_reach_the_judges_batcher():
    from omniguard_plugins import OmniGuard
    from omniguard_plugins.errors import ConfigError

    config = JudgeConfig.load(env={"OMNIGUARD_MAX_QUEUED": "7", "OMNIGUARD_MAX_QUEUED_MEDIA_BYTES": "5000",
                                   "OMNIGUARD_MAX_TEXT_CHARS": "100"})
    assert (config.max_queued, config.max_queued_media_bytes, config.max_text_chars) == (7, 5000, 100)
    with pytest.raises(ConfigError, match="max_queued must be 0"):
        JudgeConfig(max_queued=-1)
    judge = OmniGuard(config, backend=GatedBackend())
    assert (judge.batcher.max_queued, judge.batcher.max_queued_media_bytes) == (7, 5000)
    judge.close()
