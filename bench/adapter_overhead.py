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


def per_call_ms(paths: dict[str, Callable[[], object]], calls: int, rounds: int = 10) -> dict[str, float]:
    """Median ms per call of each path. The paths take turns in ``rounds`` rounds, so a slow
    spell of the machine lands on all of them rather than on whichever ran then."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for fn in paths.values():
        for _ in range(10):
            fn()
    for _ in range(rounds):
        for name, fn in paths.items():
            for _ in range(max(1, calls // rounds)):
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    judge = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    text = "What is a good recipe for vegetable rice?"

    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_omniguard import OmniGuardRunnable, guard
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index_omniguard import OmniGuardPostprocessor
    from nemoguardrails_omniguard import omniguard_check_input

    runnable = OmniGuardRunnable(direction="input", judge=judge)
    post = OmniGuardPostprocessor(judge=judge)
    nodes = [NodeWithScore(node=TextNode(text=text), score=1.0)]
    query = QueryBundle("recipe")
    loop = asyncio.new_event_loop()

    answer = RunnableLambda(lambda x: "Rice, peas and carrots.")
    guarded = guard(answer, judge=judge, check_output=False)
    paths: dict[str, Callable[[], object]] = {
        "judge.check (baseline)": lambda: judge.check(user=text),
        "OmniGuardRunnable.invoke(str)": lambda: runnable.invoke(text),
        "OmniGuardRunnable.invoke([HumanMessage])": lambda: runnable.invoke([HumanMessage(text)]),
        "the wrapped RunnableLambda alone": lambda: answer.invoke(text),
        "guard(runnable).invoke, input rail only": lambda: guarded.invoke(text),
        "OmniGuardPostprocessor, 1 node": lambda: post.postprocess_nodes(nodes, query),
        "NeMo omniguard_check_input action": lambda: loop.run_until_complete(
            omniguard_check_input(context={"user_message": text}, omniguard_judge=judge)),
    }
    ms = per_call_ms(paths, args.calls)
    base = ms["judge.check (baseline)"]
    # the guard runs the check *and* the wrapped runnable: its own cost is over both
    own = {name: value - base for name, value in ms.items()}
    own["guard(runnable).invoke, input rail only"] -= ms["the wrapped RunnableLambda alone"]
    own["the wrapped RunnableLambda alone"] = float("nan")
    print(f"{'path':<44} {'median ms/call':>14} {'adapter adds':>13}")
    for name, value in ms.items():
        print(f"{name:<44} {value:>14.3f} {own[name]:>+13.3f}")
    judge.close()


if __name__ == "__main__":
    main()
