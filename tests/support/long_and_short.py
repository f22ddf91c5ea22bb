"""The issue's scenario on the real tiny checkpoint (CPU): while a ~30 KB text (within the
8,192-token context) is being judged, a short check sent from another thread a second later.

    python -m tests.support.long_and_short [--rounds 3]

Prints, per round, how long the long check took and how long the short one waited. A forward
pass cannot be preempted, so the short check waits for what is left of the long one's prefill;
the batcher only guarantees it is next (never behind other long requests: see
``test_reliability_tiny.py``). Shorter waits need chunked prefill in the backend.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import tiny_checkpoint
from omniguard_plugins.testing._tiny import _WORDS


def long_text(chars: int, seed: int) -> str:
    """Words the tiny tokenizer knows whole: ~5 characters a token, so 30 KB fits the context."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(chars // 4))[:chars]


def one_round(judge: OmniGuard, chars: int, delay_s: float, seed: int) -> tuple[float, float, int]:
    text = long_text(chars, seed)
    out: dict[str, float] = {}

    def run_long() -> None:
        started = time.perf_counter()
        judge.check(user=text)
        out["long"] = time.perf_counter() - started

    thread = threading.Thread(target=run_long)
    thread.start()
    time.sleep(delay_s)
    started = time.perf_counter()
    short = judge.check(user=f"what is the weather today {seed}")
    out["short"] = time.perf_counter() - started
    thread.join()
    assert short.error is None
    tokens = judge.backend.encode([__import__("omniguard_plugins.backends.base", fromlist=["x"]).GenerationRequest(
        prompt=text)])["input_ids"].shape[1]
    return out["long"], out["short"], int(tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chars", type=int, default=30_000)
    ap.add_argument("--delay", type=float, default=1.0)
    args = ap.parse_args()
    judge = OmniGuard(model=str(tiny_checkpoint()), device="cpu", cache_size=0).load()
    judge.check(user="warm up")
    rows = [one_round(judge, args.chars, args.delay, seed) for seed in range(args.rounds)]
    for long_s, short_s, tokens in rows:
        print(f"long {args.chars} chars ({tokens} tokens): {long_s:.2f} s; short sent {args.delay:g} s later: "
              f"answered in {short_s:.2f} s")
    print(f"median short wait {statistics.median(r[1] for r in rows):.2f} s; "
          f"median long {statistics.median(r[0] for r in rows):.2f} s")
    judge.close()


if __name__ == "__main__":
    main()
