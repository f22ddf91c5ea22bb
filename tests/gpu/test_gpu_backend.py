"""GPU checks, run by bench/gpu_check.sh on a CUDA machine; skipped elsewhere."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _judge_over(judge, **switches):
    """A judge over the same loaded model with some fast paths switched."""
    from dataclasses import replace

    from omniguard_plugins import OmniGuard

    backend = judge.backend.variant(fast_paths=replace(judge.backend.fast_paths, **switches))
    return OmniGuard(backend=backend, cache_size=0, max_batch=32)


@pytest.fixture(scope="module")
def cuda_judge(tiny_checkpoint_path):
    from omniguard_plugins import OmniGuard

    judge = OmniGuard(model=str(tiny_checkpoint_path), device="cuda", cache_size=0, max_batch=32)
    judge.load()
    yield judge
    judge.close()


def test_tiny_checkpoint_on_cuda_in_bf16(cuda_judge) -> None:
    backend = cuda_judge.backend
    assert backend.device == "cuda" and backend.model.dtype == torch.bfloat16
    assert not cuda_judge.check(user="how to make a bomb").safe
    assert cuda_judge.check(user="recommend a good book").safe


def test_modes_agree_on_cuda(cuda_judge) -> None:
    texts = ["how to make a bomb", "recommend a good book", "steal a bike", "where is the library"]
    v = cuda_judge.check_many([{"user": t} for t in texts])
    c = cuda_judge.check_many([{"user": t} for t in texts], mode="critique")
    s = cuda_judge.check_many([{"user": t} for t in texts], mode="score")
    assert [x.safe for x in v] == [x.safe for x in c] == [x.safe for x in s]


def test_prefix_reuse_and_caller_prepare_agree_on_cuda(cuda_judge) -> None:
    texts = ["how to make a bomb", "recommend a good book", "steal a bike", "where is the library", "kill time"]
    backend = cuda_judge.backend
    assert backend.prepares_in_caller  # on by default on CUDA
    fast = cuda_judge.check_many([{"user": t} for t in texts])
    assert backend.prefix_kv.hits + backend.prefix_kv.misses > 0
    with _judge_over(cuda_judge, prefix_cache=False, caller_prepare=False) as judge:
        plain = judge.check_many([{"user": t} for t in texts])
    assert [(v.safe, v.category_codes) for v in fast] == [(v.safe, v.category_codes) for v in plain]


def test_decode_graphs_capture_and_agree_on_cuda(cuda_judge) -> None:
    texts = ["how to make a bomb", "recommend a good book", "steal a bike", "where is the library", "kill time"]
    backend = cuda_judge.backend
    eager = cuda_judge.check_many([{"user": t} for t in texts], mode="critique")
    with _judge_over(cuda_judge, decode_graphs=True) as judge:
        graphed = judge.check_many([{"user": t} for t in texts], mode="critique")
        again = judge.check_many([{"user": t + " now"} for t in texts], mode="critique")  # replays
    assert backend.static_decoder.capture, "graph capture failed and fell back to eager steps (see the log)"
    assert backend.static_decoder.graphs_captured > 0
    assert [(v.safe, v.category_codes) for v in graphed] == [(v.safe, v.category_codes) for v in eager]
    assert all(v.error is None for v in again)


def test_oom_splits_the_batch(cuda_judge, monkeypatch) -> None:
    backend = cuda_judge.backend
    real = backend._run
    sizes: list[int] = []

    def flaky(requests):
        sizes.append(len(requests))
        if len(requests) > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(requests)

    monkeypatch.setattr(backend, "_run", flaky)
    texts = [f"request {i} bomb" if i % 2 else f"request {i} book" for i in range(8)]
    verdicts = cuda_judge.check_many([{"user": t} for t in texts])
    assert [v.safe for v in verdicts] == [i % 2 == 0 for i in range(8)]
    assert sizes[0] == 8 and max(sizes[1:]) <= 4


def test_full_size_7b_thinker_memory_and_a_batch() -> None:
    from PIL import Image as PILImage

    from omniguard_plugins import Image, OmniGuard
    from omniguard_plugins.backends.transformers import BenchKnobs
    from omniguard_plugins.bench.random_model import build_random_backend

    torch.cuda.reset_peak_memory_stats()
    backend = build_random_backend("omniguard-7b", device="cuda", knobs=BenchKnobs(verdict_max_new_tokens=16))
    weights_gb = sum(p.numel() * p.element_size() for p in backend.model.parameters()) / 1e9
    assert weights_gb <= 18.0, weights_gb
    judge = OmniGuard(backend=backend, model="random-7b", cache_size=0, max_batch=32)
    img = PILImage.new("RGB", (448, 448), (30, 90, 200))
    verdicts = judge.check_many([{"user": [f"describe picture {i}", Image(img)]} for i in range(32)])
    assert len(verdicts) == 32
    # random weights write noise: every verdict must fail closed, none may pass as safe
    assert all(v.error == "unparseable" and not v.safe for v in verdicts)
    scored = judge.check_many([{"user": f"text {i}"} for i in range(32)], mode="score")
    assert all(0.0 <= v.score <= 1.0 for v in scored)
    # the policy prefix's KV was reused: each row prefilled only its own tail
    assert backend.last_computed_tokens and max(backend.last_computed_tokens) < min(backend.last_prompt_tokens)
    print(f"\n7B thinker weights: {weights_gb:.1f} GB; peak allocated {torch.cuda.max_memory_allocated() / 1e9:.1f} GB")
    judge.close()
    del backend
    torch.cuda.empty_cache()
