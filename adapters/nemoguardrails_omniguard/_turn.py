"""What one :func:`~nemoguardrails_omniguard.stream` turn shares with the rail actions.

``stream()`` runs NeMo's ``generate_async`` in a task of its own; a context variable set just
before that task starts is what the actions running inside it see (NeMo copies the context
into every task it makes for the turn). Through it the input action tells the stream whether
the input was refused, and the output action takes the stream rail's verdict on the answer
instead of judging the same text a second time.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nemoguardrails.actions.rail_outcome import RailOutcome

    from omniguard_plugins import Verdict

__all__ = ["StreamTurn", "stream_turn"]


@dataclass
class StreamTurn:
    """One streamed turn: the handler NeMo streams the answer into, the input rail's outcome
    once it ran, and the stream rail's verdict on the whole answer once it is in."""

    handler: Any
    input_outcome: RailOutcome | None = None
    answer: asyncio.Future[Verdict | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def answer_verdict(self) -> Verdict | None:
        """The stream rail's verdict on the answer NeMo's output rail is asked about: the
        blocking one, or the final check's. None when the answer did not come through the
        handler (it is then judged as usual)."""
        if not self.handler.streaming_finished_event.is_set():
            return None  # not the streamed answer: NeMo's output rail runs only once the LLM ended
        return await asyncio.shield(self.answer)


_TURN: ContextVar[StreamTurn | None] = ContextVar("omniguard_nemo_stream_turn", default=None)


def stream_turn() -> StreamTurn | None:
    """The stream turn the calling action runs in, if any."""
    return _TURN.get()
