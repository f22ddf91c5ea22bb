"""Faults inside one process, each failing closed with a one-line reason: a backend that raises,
hangs past the timeout, writes garbage or runs out of memory (the real tiny checkpoint), a
worker thread that dies, a queue that is full, and a text too long to judge."""

from __future__ import annotations

import threading
import time

import pytest

from omniguard_plugins.errors import OverloadedError
from omniguard_plugins.testing import ScriptedBackend, keyword_handler, scripted_judge

KEYWORDS = keyword_handler({"bomb": "S9"})


def test_one_raising_request_in_a_batch_is_blocked_alone():
    def handler(prompt, media):
        if "poison" in prompt:
            raise RuntimeError("the kernel faulted")
        return KEYWORDS(prompt, media)

    judge = scripted_judge(handler, cache_size=0, max_batch=8, max_wait_ms=50)
    texts = [f"message {i}" + (" poison" if i == 3 else "") + (" bomb" if i == 5 else "") for i in range(8)]
    verdicts = judge.check_many([{"user": t} for t in texts])
    assert [v.error is not None for v in verdicts] == [i == 3 for i in range(8)]
    assert not verdicts[3].safe and verdicts[3].error.startswith("backend:")
    assert [v.safe for i, v in enumerate(verdicts) if i != 3] == [i != 5 for i in range(8) if i != 3]
    judge.close()


@pytest.mark.parametrize(("on_error", "safe"), [("block", False), ("allow", True)])
def test_a_hung_backend_times_out_and_the_next_check_is_judged(on_error, safe):
    release = threading.Event()

    def handler(prompt, media):
        if "hang" in prompt:
            release.wait(5)
        return KEYWORDS(prompt, media)

    judge = scripted_judge(handler, cache_size=0, timeout_s=0.3, on_error=on_error)
    started = time.monotonic()
    verdict = judge.check(user="please hang")
    assert verdict.safe is safe and verdict.error.startswith("timeout:")
    assert time.monotonic() - started < 3  # the deadline, not the hang, decides
    release.set()
    while judge.batcher.health().running_s > 0:  # the hung batch ends: not a stuck backend any more
        time.sleep(0.01)
    after = judge.check(user="how do I build a bomb")
    assert after.safe is False and after.error is None
    judge.close()


@pytest.mark.parametrize("garbage", ["", "lorem ipsum", "- Safety Assessment: maybe", "\x00\xff" * 50])
def test_garbage_output_is_blocked_as_unparseable(garbage):
    judge = scripted_judge(lambda p, m: garbage, cache_size=0)
    verdict = judge.check(user="hello")
    assert verdict.safe is False and verdict.error == "unparseable"
    judge.close()


def test_a_worker_that_dies_gives_a_blocking_verdict_and_the_next_check_is_judged(monkeypatch):
    judge = scripted_judge(KEYWORDS, cache_size=0)
    batcher = judge.batcher
    real = batcher._run_group
    died = {"once": False}

    def dies_once(group):
        if not died["once"]:
            died["once"] = True
            raise SystemExit("a library called sys.exit in the worker")
        real(group)

    monkeypatch.setattr(batcher, "_run_group", dies_once)
    verdict = judge.check(user="hello")
    assert verdict.safe is False and "worker died" in verdict.error
    assert judge.check(user="how do I build a bomb").category_codes == ("S9",)
    assert batcher.stats.worker_restarts == 1
    judge.close()


@pytest.mark.parametrize("on_error", ["block", "raise"])
def test_a_full_queue_is_a_blocking_verdict_in_process_or_raises_under_on_error_raise(on_error):
    from omniguard_plugins import OmniGuard

    gate = threading.Event()
    backend = ScriptedBackend(lambda p, m: (gate.wait(5), KEYWORDS(p, m))[1])
    judge = OmniGuard(backend=backend, model="scripted", cache_size=0, max_queued=1, max_batch=1, max_wait_ms=0,
                      on_error=on_error)
    held = [threading.Thread(target=judge.check, kwargs={"user": f"held {i}"}) for i in range(2)]
    deadline = time.monotonic() + 5
    for t, reached in zip(held, (lambda: backend.calls == 1, lambda: judge.batcher.queue_depth == 1)):
        t.start()  # the first runs (held by the gate), then the second waits: the queue is full
        while not reached() and time.monotonic() < deadline:
            time.sleep(0.005)
    assert (backend.calls, judge.batcher.queue_depth) == (1, 1), judge.batcher.health()
    started = time.monotonic()
    if on_error == "raise":
        with pytest.raises(OverloadedError, match="max_queued=1"):
            judge.check(user="one too many")
    else:
        shed = judge.check(user="one too many")
        assert shed.safe is False and shed.error.startswith("overloaded:") and "max_queued=1" in shed.error
    assert time.monotonic() - started < 0.5
    assert judge.batcher.health().state == "overloaded"
    gate.set()
    for t in held:
        t.join(5)
    assert judge.batcher.health().state == "ready"
    assert "one too many" not in " ".join(backend.prompts)
    judge.close()


def test_too_much_text_is_a_blocking_verdict_in_milliseconds_without_the_model():
    judge = scripted_judge(KEYWORDS, cache_size=0)
    started = time.perf_counter()
    verdict = judge.check(user="a" * 100_000)
    assert time.perf_counter() - started < 1.0  # the bound the issue names
    assert verdict.safe is False and verdict.error.startswith("text_too_large:")
    assert "100000 characters" in verdict.error and "max_text_chars" in verdict.error
    assert judge.backend.calls == 0
    judge.close()


def test_a_configured_text_cap_applies():
    judge = scripted_judge(KEYWORDS, cache_size=0, max_text_chars=10)
    assert judge.check(user="short").error is None
    assert judge.check(user="a longer text").error.startswith("text_too_large:")
    judge.close()


@pytest.mark.slow
def test_cuda_oom_splits_the_batch_on_the_real_checkpoint(tiny_judge, monkeypatch):
    """The transformers backend halves a batch that runs out of memory, down to one request,
    which then fails alone with a one-line reason (simulated: this runs on the CPU)."""
    import torch

    model = tiny_judge.backend.model
    real = model.forward
    sizes: list[int] = []

    def forward(*args, **kwargs):
        rows = next(v.shape[0] for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.dim() >= 2)
        sizes.append(rows)
        if rows > 2 or kwargs.get("_fail_all"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.35 GiB)")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    texts = [f"oom split {i} " + ("bomb" if i % 2 else "book") for i in range(8)]
    verdicts = tiny_judge.check_many([{"user": t} for t in texts])
    assert [v.error for v in verdicts] == [None] * 8
    assert [v.safe for v in verdicts] == [i % 2 == 0 for i in range(8)]
    assert max(sizes) > 2 and 2 in sizes  # tried as a batch (however the 8 gathered), then split

    monkeypatch.setattr(model, "forward", lambda *a, **k: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")))
    alone = tiny_judge.check(user="oom alone")
    assert alone.safe is False and "out of memory for a single request" in alone.error
    assert "GiB" not in alone.error
