"""Pieces of the micro-batcher that hold no lock: its counters and health, the memory a
request holds, and how a backend's own exception is shown to callers."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from .backends.base import GenerationRequest
from .errors import BackendError

__all__ = ["BatchStats", "BatcherHealth", "State", "backend_failure", "media_nbytes"]

log = logging.getLogger("omniguard")

State = Literal["ready", "overloaded", "broken"]
_ALLOCATOR = re.compile(r"alloc|out of memory", re.IGNORECASE)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    backend_errors: int = 0
    busy_s: float = 0.0
    #: refused at admission (queue or media bound), never queued
    rejected: int = 0
    #: dropped before running: the caller cancelled, or it waited past max_queue_wait_s
    cancelled: int = 0
    expired: int = 0
    worker_restarts: int = 0

    @property
    def max_batch_seen(self) -> int:
        return max(self.batch_sizes, default=0)


@dataclass(frozen=True)
class BatcherHealth:
    state: State
    #: one line for humans (empty when ready)
    reason: str
    queue_depth: int
    queued_media_bytes: int
    #: how long the batch now running has run (0 when idle)
    running_s: float
    #: seconds a refused caller should wait before retrying
    retry_after_s: float
    #: seconds a request admitted now would wait before its batch starts (an estimate)
    expected_wait_s: float = 0.0


def media_nbytes(request: GenerationRequest) -> int:
    """Decoded bytes a request holds in memory (arrays and images), for the queue's byte bound."""
    total = 0
    for m in request.media:
        for name in ("samples", "frames"):
            array = getattr(m, name, None)
            if array is not None:
                total += int(getattr(array, "nbytes", 0))
        image = getattr(m, "image", None)
        if image is not None:
            total += image.width * image.height * len(image.getbands())
    return total


def backend_failure(exc: BaseException) -> BackendError:
    """A backend's own exception as one line for the caller (the traceback goes to the log).
    Out-of-memory text (allocator sizes, device state) is never passed on: it says nothing a
    client can act on and tells an attacker how the host is built."""
    log.error("omniguard: the backend raised %s", type(exc).__name__, exc_info=exc)
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, MemoryError) or "OutOfMemory" in name or _ALLOCATOR.search(text):
        reason = f"backend failed: out of memory ({name}); send smaller media or less text"
    else:
        reason = f"backend failed: {name}: {text[:160]}".rstrip(": ")
    err = BackendError(reason)
    err.__cause__ = exc
    return err
