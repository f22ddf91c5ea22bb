"""What the stream rail costs: time to the last byte, guarded over unguarded (issue 15).

Setup: a chat model streaming 400 chunks of 5 characters, one every 5 ms (a 2,000-character
answer over ~2 s); a scripted judge whose every backend call (one batch, up to 64 checks) takes
100 ms; windows
every 200 characters (``step_chars=200``), the rail's other defaults. Rows:

- ``guard(chain)``: ``prompt | model | StrOutputParser()``, guarded (input and output rails);
- ``agent``: ``create_agent(model, middleware=[OmniGuardMiddleware()])`` streamed with
  ``stream_mode="messages"``, against the same agent without the middleware;

once with a sync ``stream`` and for 1, 8 and 32 concurrent ``astream`` calls sharing one judge.
Target: guarded / unguarded <= 1.15 (about one judge latency on top of the source, not one per
window). Each stream's answer is distinct, so no verdict comes from the judge's cache.

    .venv/bin/python bench/streaming.py [--concurrency 1,8,32] [--rounds 3] [--no-check]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

CHUNKS, SIZE, EVERY_S, JUDGE_S, STEP, TARGET = 400, 5, 0.005, 0.100, 200, 1.15


class PacedModel(BaseChatModel):
    """Streams a 2,000-character answer in 400 chunks of 5, one every 5 ms."""

    @property
    def _llm_type(self) -> str:
        return "paced"

    def bind_tools(self, tools: Any, **kwargs: Any) -> PacedModel:
        return self

    @staticmethod
    def _answer(messages: list[BaseMessage]) -> str:
        seed = str(messages[-1].content)[:4]  # distinct per stream: no verdict from the cache
        return f"{seed:<4.4} a calm garden answer, "[:25] * (CHUNKS * SIZE // 25)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._answer(messages)))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        text = self._answer(messages)
        for i in range(0, len(text), SIZE):
            time.sleep(EVERY_S)
            yield ChatGenerationChunk(message=AIMessageChunk(content=text[i : i + SIZE]))

    async def _astream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        text = self._answer(messages)
        for i in range(0, len(text), SIZE):
            await asyncio.sleep(EVERY_S)
            yield ChatGenerationChunk(message=AIMessageChunk(content=text[i : i + SIZE]))


def _judge() -> Any:
    from omniguard_plugins import OmniGuard
    from omniguard_plugins.testing import ScriptedBackend, keyword_handler

    return OmniGuard(backend=ScriptedBackend(keyword_handler({"bomb": "S9"}), delay_s=JUDGE_S), model="scripted",
                     cache_size=0, max_batch=64)


def _doors(judge: Any) -> dict[str, tuple[Any, Any, Callable[[int], Any]]]:
    """name -> (unguarded, guarded, input for stream i)."""
    from langchain.agents import create_agent
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_omniguard import OmniGuardMiddleware, guard

    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | PacedModel() | StrOutputParser()
    agent_mw = OmniGuardMiddleware(judge=judge, step_chars=STEP)
    return {
        "guard(chain)": (chain, guard(chain, judge=judge, step_chars=STEP), lambda i: {"q": f"{i:04d} tips?"}),
        "agent": (create_agent(PacedModel(), []), create_agent(PacedModel(), [], middleware=[agent_mw]),
                  lambda i: {"messages": [HumanMessage(f"{i:04d} tips?")]}),
    }


def _is_text(item: Any) -> bool:
    if isinstance(item, str):
        return bool(item)
    message = item[0] if isinstance(item, tuple) else item
    return isinstance(message, AIMessageChunk) and bool(message.content)


def _kwargs(name: str) -> dict[str, Any]:
    return {"stream_mode": "messages"} if name == "agent" else {}


def last_byte_sync(runnable: Any, value: Any, name: str) -> float:
    t0 = time.perf_counter()
    last = t0
    for item in runnable.stream(value, **_kwargs(name)):
        if _is_text(item):
            last = time.perf_counter()
    return last - t0


async def last_byte_async(runnable: Any, value: Any, name: str) -> float:
    t0 = time.perf_counter()
    last = t0
    async for item in runnable.astream(value, **_kwargs(name)):
        if _is_text(item):
            last = time.perf_counter()
    return last - t0


async def concurrent(runnable: Any, make: Callable[[int], Any], name: str, n: int) -> list[float]:
    return list(await asyncio.gather(*(last_byte_async(runnable, make(i), name) for i in range(n))))


def _measure(plain: Any, guarded: Any, make: Callable[[int], Any], name: str, label: str,
             rounds: int) -> tuple[float, float]:
    """Median over ``rounds`` of the mean time to last byte, unguarded and guarded taking turns
    (a busy spell of the machine lands on both)."""
    base: list[float] = []
    guard_s: list[float] = []
    for _ in range(rounds):
        for runnable, out in ((plain, base), (guarded, guard_s)):
            if label == "sync":
                out.append(last_byte_sync(runnable, make(0), name))
            else:
                out.append(statistics.mean(asyncio.run(concurrent(runnable, make, name, int(label)))))
    return statistics.median(base), statistics.median(guard_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3, help="each row's median over this many runs")
    parser.add_argument("--no-check", action="store_true", help="report only; exit 0 even over the target")
    args = parser.parse_args()
    judge = _judge()
    doors = _doors(judge)
    print(f"stream rail: {CHUNKS} chunks x {SIZE} chars every {EVERY_S * 1000:.0f} ms, judge {JUDGE_S * 1000:.0f} ms"
          f" per call, step_chars={STEP}; time to last byte, mean per stream, median of {args.rounds} runs")
    print(f"{'door':<14}{'streams':>8}{'unguarded s':>13}{'guarded s':>11}{'ratio':>8}  judge calls")
    over = []
    for name, (plain, guarded, make) in doors.items():
        last_byte_sync(plain, make(9999), name)  # warm imports and the judge's worker
        calls = judge.backend.calls
        for label in ["sync", *args.concurrency.split(",")]:
            base, guard_s = _measure(plain, guarded, make, name, label, args.rounds)
            ratio = guard_s / base
            flag = "" if ratio <= TARGET else "  OVER"
            print(f"{name:<14}{label:>8}{base:>13.3f}{guard_s:>11.3f}{ratio:>8.3f}{flag}")
            if flag:
                over.append(f"{name} {label}")
        print(f"{'':<14}{'':>8}  ({judge.backend.calls - calls} judge calls for the rows above)")
    judge.close()
    if over and not args.no_check:
        print(f"over the {TARGET} target: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
