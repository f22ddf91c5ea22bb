"""The agent's answer on its way out of a live session: the gate on the turn it answers, and the
push rail's wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from ._types import LiveVerdict

if TYPE_CHECKING:
    from ..doors import RailSession
    from ..streaming import StreamRail, Window
    from ..verdict import Verdict
    from .session import LiveSession

__all__ = ["Answer", "LiveOutput"]

T = TypeVar("T")


class Answer:
    """One answer of the agent on its way out: waits for the verdict on the turn it answers,
    counts and reports a block, and sends each window's verdict out with its time."""

    def __init__(self, session: LiveSession, on_block: Callable[[Verdict], Awaitable[None] | None] | None) -> None:
        self.session = session
        self.gate = session._gate  # noqa: SLF001 - the turn this answer replies to
        self.turn = session._turns  # noqa: SLF001
        self.on_block = on_block

    async def turn_allowed(self) -> bool:
        if self.gate is None:
            return True
        live = await self.gate
        return live is None or live.safe

    async def blocked(self, verdict: Verdict) -> None:
        if not await self.turn_allowed():
            return  # the turn it answers was blocked: that refusal is the one
        self.session.stats.outputs_blocked += 1
        if self.on_block is not None:
            result = self.on_block(verdict)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result

    def heard(self, window: Window, verdict: Verdict) -> None:
        now = self.session.now
        self.session._emit(LiveVerdict("output", verdict, (now, now), self.turn, stage="output"))  # noqa: SLF001


class LiveOutput(Generic[T]):
    """The push rail of one answer: a :class:`~omniguard_plugins.doors.RailSession` whose
    ``feed`` / ``finish`` never raise the cancellation of a window check the block itself
    cancelled (a window settled after the block: ``RailSession`` can store its
    ``CancelledError``); a real cancellation of the caller still propagates."""

    def __init__(self, session: RailSession[T]) -> None:
        self.session = session

    @property
    def rail(self) -> StreamRail[T]:
        return self.session.rail

    @property
    def blocked(self) -> Verdict | None:
        return self.session.blocked

    async def feed(self, chunk: T) -> None:
        try:
            await self.session.feed(chunk)
        except asyncio.CancelledError:
            self._reraise_unless_block()

    async def finish(self) -> Verdict | None:
        try:
            return await self.session.finish()
        except asyncio.CancelledError:
            self._reraise_unless_block()
            return self.session.blocked

    def cancel(self) -> None:
        self.session.cancel()

    def _reraise_unless_block(self) -> None:
        task = asyncio.current_task()
        if self.session.blocked is None or (task is not None and task.cancelling()):
            raise  # noqa: PLE0704 - re-raised from the caller's except block
