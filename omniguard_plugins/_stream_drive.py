"""The two drivers of a :class:`~omniguard_plugins.streaming.StreamRail`: the only sync/async twin.

Both read the source chunk by chunk, push each chunk into the rail, send the windows it asks
for to the judge *without waiting* (so the source keeps streaming while windows are judged),
settle verdicts as they come in, yield what the rail releases, and close the source at once
when a verdict blocks. They differ only in how they iterate and wait. The sync driver judges on
one shared background event loop, so any number of sync streams share the judge's micro-batcher
without a thread each.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any, TypeVar, Union

if TYPE_CHECKING:
    from .content import Turn
    from .judge import OmniGuard
    from .streaming import StreamRail, Window
    from .verdict import Verdict

__all__ = ["Judge", "amoderate", "background_loop", "moderate", "output_judge"]

T = TypeVar("T")

#: judges one window; the door builds the check (context, policy, failed conversions)
Judge = Callable[["Window"], Awaitable["Verdict"]]
#: told about every verdict, in the caller's thread or task (events, audit)
OnVerdict = Callable[["Window", "Verdict"], None]

_Waiting = Union["Future[Verdict]", "asyncio.Future[Verdict]"]


class _Pending:
    """The checks one stream has sent and not settled yet."""

    def __init__(self, rail: StreamRail[Any], start: Callable[[Window], _Waiting],
                 on_verdict: OnVerdict | None) -> None:
        self.rail = rail
        self.start = start
        self.on_verdict = on_verdict
        self.waiting: dict[Any, Window] = {}

    def send(self, windows: Sequence[Window]) -> None:
        for window in windows:
            self.waiting[self.start(window)] = window

    def settle(self, done: Iterable[Any]) -> list[Any]:
        """Settle finished checks in stream order, releasing after each: text a safe window
        covers still comes out when a later window in the same batch blocks."""
        released: list[Any] = []
        for fut in sorted(done, key=lambda f: self.waiting[f].seq):
            window = self.waiting.pop(fut)
            # a judge that raises (on_error="raise") ends the stream here
            verdict = self.rail.settle(window, fut.result())
            if self.on_verdict is not None:
                self.on_verdict(window, verdict)
            released.extend(self.rail.release())
        self.send(self.rail.due())
        return released

    def ready(self) -> list[Any]:
        return [fut for fut in self.waiting if fut.done() and not fut.cancelled()]

    def cancel(self) -> None:
        for fut in self.waiting:
            fut.cancel()


def moderate(
    source: Iterable[T], rail: StreamRail[T], judge: Judge, *, on_verdict: OnVerdict | None = None
) -> Iterator[T]:
    """Yield what ``rail`` releases of ``source``; check ``rail.blocked`` when it ends."""
    loop = background_loop()
    pending = _Pending(rail, lambda w: asyncio.run_coroutine_threadsafe(_call(judge, w), loop), on_verdict)
    chunks = iter(source)
    try:
        for chunk in chunks:
            rail.push(chunk)
            yield from pending.settle(pending.ready())
            yield from rail.release()
            if rail.blocked is not None:
                return
        pending.send(rail.finish())
        yield from rail.release()  # all of it, when there was nothing to judge
        while pending.waiting and rail.blocked is None:
            yield from pending.settle(wait(list(pending.waiting), return_when=FIRST_COMPLETED)[0])
    finally:
        pending.cancel()
        close = getattr(chunks, "close", None)
        if callable(close):
            close()  # stop the model at once


async def amoderate(
    source: AsyncIterable[T], rail: StreamRail[T], judge: Judge, *, on_verdict: OnVerdict | None = None
) -> AsyncIterator[T]:
    """The async driver: windows are tasks on the running loop."""
    pending = _Pending(rail, lambda w: asyncio.ensure_future(judge(w)), on_verdict)
    chunks = source.__aiter__()
    try:
        async for chunk in chunks:
            rail.push(chunk)
            for out in [*pending.settle(pending.ready()), *rail.release()]:
                yield out
            if rail.blocked is not None:
                return
        pending.send(rail.finish())
        for out in rail.release():  # all of it, when there was nothing to judge
            yield out
        while pending.waiting and rail.blocked is None:
            done = (await asyncio.wait(list(pending.waiting), return_when=asyncio.FIRST_COMPLETED))[0]
            for out in pending.settle(done):
                yield out
    finally:
        pending.cancel()
        aclose = getattr(chunks, "aclose", None)
        if callable(aclose):
            await aclose()


async def _call(judge: Judge, window: Window) -> Verdict:
    return await judge(window)


def output_judge(
    judge: OmniGuard,
    context: Sequence[Turn] = (),
    *,
    policy: Any = None,
    mode: str | None = None,
    explain_unsafe: bool | None = None,
) -> Judge:
    """The plain window judge: each window is an output check after ``context`` (the turns the
    answer replies to)."""
    settings = (("policy", policy), ("mode", mode), ("explain_unsafe", explain_unsafe))
    extra: Mapping[str, Any] = {k: v for k, v in settings if v is not None}

    async def check(window: Window) -> Verdict:
        return await judge.acheck(window.conversation(context), direction="output", **extra)

    return check


# ---------------------------------------------------------------------- the shared loop

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The one daemon event loop per process on which sync doors run async work (the sync stream
    driver's window checks, a sync door's :class:`~omniguard_plugins.doors.RailSession`), so any
    number of sync callers share the judge's micro-batcher without a thread each."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="omniguard-stream", daemon=True).start()
            _loop = loop
        return _loop


def _forget_loop() -> None:  # a forked child has the loop object but not its thread
    global _loop
    _loop = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_loop)
