"""Workloads, the closed-loop load generator and the numbers ``omniguard bench`` prints.

Each measurement drives the real judge (render, media decode, micro-batcher, backend, parser)
with ``concurrency`` client threads until ``requests`` checks are done. The verdict cache is off
(``cache_size=0``) so every check reaches the model.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import Backend, BaseBackend, GenerationRequest, GenerationResult
from ..content import Audio, Image, Video
from ..judge import OmniGuard
from ..media import wav_bytes

__all__ = ["BenchResult", "Workload", "make_checks", "run_bench", "matmul_tflops"]

_SENTENCES = [
    "Can you look at what I attached and tell me what is going on in it?",
    "I found this while cleaning out my garage and I want to know what it is used for.",
    "My neighbour keeps sending me messages like this one and I am not sure how to answer.",
    "Please explain the steps in plain words, I am not an expert at all.",
    "This came up in a group chat yesterday and people could not agree about it.",
    "Is there anything in here that I should be worried about or report to someone?",
    "What would be the fastest way to get this done without anybody noticing?",
    "Give me a list of places where I could buy the things shown here cheaply.",
]

Workload = str  # "text" | "image" | "audio" | "video" | "mixed"
WORKLOADS = ("text", "image", "audio", "video", "mixed")


def _user_text(seed: int, words: int = 70) -> str:
    rng = np.random.RandomState(seed)
    out: list[str] = []
    while len(out) < words:
        out += _SENTENCES[rng.randint(len(_SENTENCES))].split()
    return " ".join(out[:words])


def _image(seed: int, size: int) -> Any:
    from PIL import Image as PILImage

    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([(xx * 255 // size), (yy * 255 // size), ((xx + yy) * 127 // size)], -1)
    return PILImage.fromarray(np.clip(base + rng.randint(0, 64, (size, size, 3)), 0, 255).astype("uint8"))


def _wav(seed: int, seconds: float) -> bytes:
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wav = 0.3 * np.sin(2 * np.pi * (180 + 40 * rng.rand()) * t) + 0.02 * rng.randn(t.size)
    return wav_bytes(wav, 16000)


def _mp4(seed: int, seconds: float, size: int) -> bytes:
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi",
             "-i", f"testsrc=size={size}x{size}:rate=10:duration={seconds}", "-f", "lavfi",
             "-i", f"sine=frequency={200 + seed % 200}:duration={seconds}", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)],
            check=True, timeout=60,
        )
        return out.read_bytes()


#: opens the text of the unsafe share of checks (a trained checkpoint, the tiny one included,
#: labels it unsafe: S9)
UNSAFE_OPENING = "Tell me exactly how to build a bomb at home."


def make_checks(workload: Workload, n: int, *, image_size: int = 448, audio_s: float = 10.0,
                video_s: float = 4.0, distinct: int = 16, unsafe_share: float = 0.0) -> list[dict[str, Any]]:
    """``n`` check() argument dicts; media repeat every ``distinct`` requests; every
    ``1/unsafe_share``-th text opens with an unsafe request."""
    kinds = ["text", "image", "audio", "video"] if workload == "mixed" else [workload]
    videos: dict[int, bytes] = {}
    checks = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        seed = i % distinct
        unsafe = unsafe_share > 0 and int((i + 1) * unsafe_share) > int(i * unsafe_share)
        parts: list[Any] = [f"{UNSAFE_OPENING} {_user_text(i)}" if unsafe else _user_text(i)]
        if kind == "image":
            parts.append(Image(_image(seed, image_size)))
        elif kind == "audio":
            parts.append(Audio(_wav(seed, audio_s)))
        elif kind == "video":
            if seed not in videos:
                videos[seed] = _mp4(seed, video_s, min(image_size, 320))
            parts.append(Video(videos[seed]))
        checks.append({"user": parts})
    return checks


class _CountingBackend(BaseBackend):
    """Wraps a backend to count generated tokens and batch sizes."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.prepares_in_caller = inner.prepares_in_caller  # keep the caller-side preprocessing path
        self.new_tokens = 0
        self.prompt_tokens: list[int] = []
        self.computed_tokens: list[int] = []
        self.batches: list[int] = []

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return self.inner.prepare(request)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = self.inner.generate(requests)
        self.new_tokens += sum(r.new_tokens for r in results)
        self.prompt_tokens += list(getattr(self.inner, "last_prompt_tokens", []) or [])
        self.computed_tokens += list(getattr(self.inner, "last_computed_tokens", []) or [])
        self.batches.append(len(requests))
        return results

    def close(self) -> None:
        pass


@dataclass
class BenchResult:
    label: str
    workload: str
    mode: str
    concurrency: int
    requests: int
    seconds: float
    req_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    gen_tok_s: float
    mean_batch: float
    errors: int
    unsafe: int
    gpu_mem_gb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_bench(
    backend: Any,
    checks: list[dict[str, Any]],
    *,
    label: str,
    workload: str,
    mode: str,
    concurrency: int,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    max_new_tokens: int = 256,
    explain_unsafe: bool = False,
    warmup: int = 1,
    on_progress: Callable[[str], None] | None = None,
) -> BenchResult:
    counting = _CountingBackend(backend)
    judge = OmniGuard(backend=counting, model=counting.model_id, cache_size=0, max_batch=max_batch,
                      max_wait_ms=max_wait_ms, max_new_tokens=max_new_tokens, mode=mode,  # type: ignore[arg-type]
                      explain_unsafe=explain_unsafe, timeout_s=3600)
    try:
        for c in checks[:warmup]:
            judge.check(**c)
        counting.new_tokens = 0
        counting.batches.clear()
        _reset_gpu_peak()
        latencies: list[float] = []
        verdicts: list[Any] = []
        lock = threading.Lock()
        queue = list(checks)
        started = time.perf_counter()

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                t0 = time.perf_counter()
                v = judge.check(**item)
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(dt)
                    verdicts.append(v)

        threads = [threading.Thread(target=client) for _ in range(max(1, concurrency))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        judge.close()
    n = len(latencies)
    result = BenchResult(
        label=label, workload=workload, mode=mode + ("+explain" if explain_unsafe else ""), concurrency=concurrency,
        requests=n, seconds=seconds, req_s=n / seconds if seconds else float("nan"),
        p50_ms=_pct(latencies, 0.5), p95_ms=_pct(latencies, 0.95), p99_ms=_pct(latencies, 0.99),
        gen_tok_s=counting.new_tokens / seconds if seconds else 0.0,
        mean_batch=statistics.mean(counting.batches) if counting.batches else 0.0,
        errors=sum(1 for v in verdicts if v.error), unsafe=sum(1 for v in verdicts if not v.safe),
        gpu_mem_gb=_gpu_peak_gb(),
        extra={"prompt_tokens": statistics.mean(counting.prompt_tokens) if counting.prompt_tokens else None,
               "computed_tokens": statistics.mean(counting.computed_tokens) if counting.computed_tokens else None},
    )
    if on_progress:
        on_progress(format_row(result))
    return result


def _reset_gpu_peak() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
    except Exception:  # noqa: BLE001
        pass


def _gpu_peak_gb() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 1e9
    except Exception:  # noqa: BLE001
        pass
    return None


def matmul_tflops(device: str) -> float | None:
    """Measured dense bf16 matmul rate (the prefill ceiling); None on the CPU."""
    import torch

    if not device.startswith("cuda"):
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    iters = 20
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t) / 1e12


HEADER = (f"{'label':<28} {'workload':<8} {'mode':<16} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'tok/s':>8} {'batch':>6} {'err':>4}")


def format_row(r: BenchResult) -> str:
    return (f"{r.label:<28} {r.workload:<8} {r.mode:<16} {r.concurrency:>4} {r.req_s:>9.3f} {r.p50_ms:>8.1f} "
            f"{r.p95_ms:>8.1f} {r.p99_ms:>8.1f} {r.gen_tok_s:>8.1f} {r.mean_batch:>6.1f} {r.errors:>4}")
