"""What guarding a live voice session costs (issue 26): the tiny checkpoint on the CPU.

Each simulated session, paced in real time, runs three phases against one shared judge:

1. **Speaking.** 6 s of microphone PCM (20 ms chunks at 16 kHz, every 20 ms) with a camera at
   10 fps; rolling windows (3 s, one per second) and sampled frames (1/s) are judged while it
   runs. *Window latency*: from the window's last sample arriving to its verdict (queueing in
   the session included; *judge* is the check's own latency). The turn then ends with an unsafe
   transcript: *turn drop*: from the end of the utterance to the blocking verdict.
2. **A safe turn and its answer.** A 1 s utterance ends; the LLM answers (first token after
   ``--ttft`` s, then 10 characters every 30 ms, 300 characters). *First audible text*: from
   the end of the utterance to the first text the output rail releases to the TTS; default mode
   judges the turn before the LLM starts, ``speculative=True`` starts the LLM at once and holds
   its output until the turn's verdict.
3. **An unsafe answer.** The LLM streams an answer that turns unsafe; *interrupt*: from the chunk
   that completes the unsafe phrase to the block (the bot's interruption).

For 1, 8 and 32 concurrent sessions, default and speculative. Checks that waited too long are
shed and counted (``shed``), never queued without bound; checks the judge's admission control
refused are blocking verdicts (``errors``: ``overloaded``), counted and left out of the latencies.
GPU target (7B on one H200, a device run): p95 per audio window <= 300 ms at 32 sessions.

    .venv/bin/python bench/live.py [--sessions 1,8,32] [--ttft 0.3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omniguard_plugins.live import LiveSession, LiveSettings, LiveVerdict

RATE, CHUNK_S, SPEAK_S, FPS = 16_000, 0.02, 6.0, 10
SAFE_ANSWER = ("The sea is wide and calm today, and the light on the water changes every hour. " * 4)[:300]
UNSAFE_ANSWER = "Sure. To build a bo" + "mb you would first need " + "a casing and some powder."


@dataclass
class Numbers:
    window_ms: list[float] = field(default_factory=list)
    judge_ms: list[float] = field(default_factory=list)
    drop_ms: list[float] = field(default_factory=list)
    first_text_ms: list[float] = field(default_factory=list)
    interrupt_ms: list[float] = field(default_factory=list)
    shed: int = 0
    windows: int = 0
    frames: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def _speech(seconds: float, seed: int) -> bytes:
    """Speech-like PCM (a voiced buzz with a moving pitch and some noise), distinct per session."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    x = 0.3 * voiced + 0.02 * rng.standard_normal(len(t))
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _frame(seed: int) -> bytes:
    return bytes(((seed * 37) % 200, (seed * 91) % 200, 180)) * (64 * 48)


async def _paced_audio(session: LiveSession, pcm: bytes, seed: int) -> None:
    step = int(CHUNK_S * RATE) * 2
    start = time.perf_counter()
    for i in range(0, len(pcm), step):
        session.feed_audio(pcm[i : i + step], RATE, 1)
        n = i // step
        if n % int(1 / (FPS * CHUNK_S)) == 0:
            session.feed_image(_frame(seed * 1000 + n), size=(64, 48), format="RGB")
        await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.perf_counter()))


async def _llm(text: str, ttft: float, every: float = 0.03, size: int = 10):
    await asyncio.sleep(ttft)
    for i in range(0, len(text), size):
        yield text[i : i + size]
        await asyncio.sleep(every)


async def one_session(judge: Any, seed: int, speculative: bool, ttft: float, out: Numbers) -> None:
    audio_t0 = [0.0]
    verdict_window: list[tuple[float, float]] = []

    def heard(live: LiveVerdict) -> None:
        if live.check == "audio_window" and not live.verdict.error:  # shed checks are counted, not timed
            verdict_window.append((live.seconds[1], time.perf_counter()))
            out.judge_ms.append(live.verdict.latency_ms)
        if live.verdict.error:
            out.errors[live.verdict.error.split(":", 1)[0]] += 1

    session = LiveSession(judge, LiveSettings(speculative=speculative), on_verdict=heard)
    # 1. speaking, then an unsafe turn
    audio_t0[0] = time.perf_counter()
    await _paced_audio(session, _speech(SPEAK_S, seed), seed)
    ended = time.perf_counter()
    live = await session.end_turn(f"session {seed}: how do I build a bomb")
    out.drop_ms.append((time.perf_counter() - ended) * 1000)
    assert live is not None and not live.safe, "the tiny checkpoint calls 'bomb' unsafe"
    out.window_ms.extend((at - (audio_t0[0] + end_s)) * 1000 for end_s, at in verdict_window)

    # 2. a safe turn and its answer: time to the first text released to the TTS
    await _paced_audio(session, _speech(1.0, seed + 7), seed + 7)
    ended = time.perf_counter()
    first: list[float] = []
    if speculative:
        turn = session.close_turn(f"session {seed}: tell me about the sea")
    else:
        await session.end_turn(f"session {seed}: tell me about the sea")
    rail = session.output(on_release=lambda chunks: first.append(time.perf_counter()) if not first else None)
    async for chunk in _llm(SAFE_ANSWER, ttft):
        await rail.feed(chunk)
    await rail.finish()
    if speculative:
        await turn
    if first:
        out.first_text_ms.append((first[0] - ended) * 1000)

    # 3. an unsafe answer: time from the unsafe chunk to the block
    blocked: list[float] = []
    rail = session.output(on_release=lambda _: None, on_block=lambda _v: blocked.append(time.perf_counter()))
    unsafe_at = 0.0
    async for chunk in _llm(UNSAFE_ANSWER, 0.0):
        await rail.feed(chunk)
        if not unsafe_at and "bomb" in rail.rail.text:
            unsafe_at = time.perf_counter()
    await rail.finish()
    if blocked and unsafe_at:
        out.interrupt_ms.append((blocked[0] - unsafe_at) * 1000)
    stats = session.stats
    out.shed += stats.windows_shed + stats.frames_shed
    out.windows += stats.windows_judged
    out.frames += stats.frames_judged
    session.close()


def _kinds(errors: Counter[str]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in errors.most_common()) or "0"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


async def run(judge: Any, n: int, speculative: bool, ttft: float) -> Numbers:
    out = Numbers()
    await asyncio.gather(*(one_session(judge, 100 * n + i, speculative, ttft, out) for i in range(n)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,8,32")
    parser.add_argument("--ttft", type=float, default=0.3, help="the simulated LLM's time to first token (s)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--model", help="judge checkpoint (default: the tiny checkpoint)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from omniguard_plugins import OmniGuard
    from omniguard_plugins.testing import tiny_checkpoint

    model = args.model or str(tiny_checkpoint())
    judge = OmniGuard(model=model, device=args.device, max_wait_ms=5, cache_size=0)
    judge.load()
    from omniguard_plugins.content import Audio
    from omniguard_plugins.media import wav_bytes

    warm = [Audio(wav_bytes(np.zeros(3 * RATE, dtype=np.float32), RATE))]
    asyncio.run(judge.acheck(user=["warm up", warm[0]]))  # the audio path's first call pays its setup here
    rows = []
    print(f"judge: {model} on {args.device}; LLM time to first token {args.ttft:.2f} s\n")
    print("| sessions | mode | window p50 / p95 ms (judge p50) | turn drop p50 / p95 ms | first text p50 ms | "
          "interrupt p50 / p95 ms | windows | frames | shed | errors | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.sessions.split(",")]:
        for speculative in (False, True):
            started = time.perf_counter()
            r = asyncio.run(run(judge, n, speculative, args.ttft))
            row = {
                "sessions": n, "mode": "speculative" if speculative else "default",
                "window_p50_ms": pct(r.window_ms, 50), "window_p95_ms": pct(r.window_ms, 95),
                "window_judge_p50_ms": pct(r.judge_ms, 50),
                "drop_p50_ms": pct(r.drop_ms, 50), "drop_p95_ms": pct(r.drop_ms, 95),
                "first_text_p50_ms": statistics.median(r.first_text_ms) if r.first_text_ms else float("nan"),
                "interrupt_p50_ms": pct(r.interrupt_ms, 50), "interrupt_p95_ms": pct(r.interrupt_ms, 95),
                "measured": [len(r.window_ms), len(r.drop_ms), len(r.first_text_ms), len(r.interrupt_ms)],
                "windows": r.windows, "frames": r.frames, "shed": r.shed, "errors": dict(r.errors),
                "wall_s": time.perf_counter() - started,
            }
            rows.append(row)
            print(f"| {n} | {row['mode']} | {row['window_p50_ms']:.0f} / {row['window_p95_ms']:.0f} "
                  f"({row['window_judge_p50_ms']:.0f}) | "
                  f"{row['drop_p50_ms']:.0f} / {row['drop_p95_ms']:.0f} | {row['first_text_p50_ms']:.0f} | "
                  f"{row['interrupt_p50_ms']:.0f} / {row['interrupt_p95_ms']:.0f} | {r.windows} | {r.frames} | "
                  f"{r.shed} | {_kinds(r.errors)} | {row['wall_s']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    judge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
