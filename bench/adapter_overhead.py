"""What each adapter adds over a bare ``judge.check`` (CPU, scripted backend).

Target (issue 8): <= 1 ms per call. Each row runs the same safe text through the same scripted
judge (cache off, batch wait 0) so the difference is the adapter's own work: conversion,
runnable plumbing, callbacks, node handling, NeMo's action signature.

    .venv/bin/python bench/adapter_overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from omniguard_plugins.testing import scripted_judge


def per_call_ms(fn: Callable[[], object], calls: int) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    judge = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    text = "What is a good recipe for vegetable rice?"

    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableLambda
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from langchain_omniguard import OmniGuardRunnable, guard
    from llama_index_omniguard import OmniGuardPostprocessor
    from nemoguardrails_omniguard import omniguard_check_input

    runnable = OmniGuardRunnable(direction="input", judge=judge)
    guarded = guard(RunnableLambda(lambda x: "Rice, peas and carrots."), judge=judge, check_output=False)
    post = OmniGuardPostprocessor(judge=judge)
    nodes = [NodeWithScore(node=TextNode(text=text), score=1.0)]
    query = QueryBundle("recipe")
    loop = asyncio.new_event_loop()

    base = per_call_ms(lambda: judge.check(user=text), args.calls)
    rows = [
        ("judge.check (baseline)", base),
        ("OmniGuardRunnable.invoke(str)", per_call_ms(lambda: runnable.invoke(text), args.calls)),
        ("OmniGuardRunnable.invoke([HumanMessage])", per_call_ms(lambda: runnable.invoke([HumanMessage(text)]), args.calls)),
        ("guard(runnable).invoke, input rail only", per_call_ms(lambda: guarded.invoke(text), args.calls)),
        ("OmniGuardPostprocessor, 1 node", per_call_ms(lambda: post.postprocess_nodes(nodes, query), args.calls)),
        ("NeMo omniguard_check_input action", per_call_ms(
            lambda: loop.run_until_complete(omniguard_check_input(context={"user_message": text}, omniguard_judge=judge)),
            args.calls)),
    ]
    print(f"{'path':<44} {'median ms/call':>14} {'over judge.check':>17}")
    for name, ms in rows:
        print(f"{name:<44} {ms:>14.3f} {ms - base:>+16.3f}")
    judge.close()


if __name__ == "__main__":
    main()
