"""The window and frame checks of one live session, sent to the judge together and bounded.

Rolling audio windows and sampled camera frames are due far more often than a busy judge can
take them. Each session keeps at most a few of each kind waiting; when one more arrives, the
oldest waiting check of that kind is shed (its future answers ``None``: never judged, so the door
never passes what it held for it) and counted. While one batch is with the judge, the next one
gathers; it goes in a single :meth:`~omniguard_plugins.judge.OmniGuard.acheck_many`, and the
judge's micro-batcher merges it with other sessions' batches.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..doors import Ask
    from ..judge import OmniGuard
    from ..verdict import Verdict

__all__ = ["Batches"]


@dataclass
class _Waiting:
    kind: str
    ask: Ask
    future: asyncio.Future[Verdict | None]


class Batches:
    """Bounded queue of checks per kind (``limits``), one batch with the judge at a time."""

    def __init__(
        self, judge: Callable[[], OmniGuard], limits: Mapping[str, int], on_shed: Callable[[str], None]
    ) -> None:
        self._judge = judge
        self._limits = dict(limits)
        self._on_shed = on_shed
        self._waiting: deque[_Waiting] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, kind: str, ask: Ask) -> asyncio.Future[Verdict | None]:
        """Queue one check; its future answers the verdict, or None if it was shed."""
        loop = asyncio.get_running_loop()
        same = [w for w in self._waiting if w.kind == kind]
        if len(same) >= self._limits[kind]:
            self._waiting.remove(same[0])
            _answer(same[0].future, None)
            self._on_shed(kind)
        future: asyncio.Future[Verdict | None] = loop.create_future()
        self._waiting.append(_Waiting(kind, ask, future))
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="omniguard-live-checks")
        assert self._wake is not None
        self._wake.set()
        return future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch = list(self._waiting)
                self._waiting.clear()
                try:
                    verdicts = await self._judge().acheck_many([w.ask for w in batch])
                except asyncio.CancelledError:
                    for w in batch:
                        _answer(w.future, None)
                    raise
                except BaseException as exc:  # noqa: BLE001 - on_error="raise": each waiter hears it
                    for w in batch:
                        if not w.future.done():
                            w.future.set_exception(exc)
                    continue
                for w, verdict in zip(batch, verdicts):
                    _answer(w.future, verdict)

    def close(self) -> None:
        """Stop: waiting checks answer None, the batch with the judge is cancelled."""
        while self._waiting:
            _answer(self._waiting.popleft().future, None)
        if self._task is not None:
            self._task.cancel()


def _answer(future: asyncio.Future[Verdict | None], value: Verdict | None) -> None:
    if not future.done():
        future.set_result(value)
