"""Admission: a reservation taken when a request arrives, counted in expected seconds of model work.

A burst's requests take seconds to read, parse and convert before any reaches the batcher's
queue, so a gate that reads the queue lets the whole burst in, and the queue bound refuses it
seconds later. Here every caller takes a :class:`Reservation` the moment it arrives (the server
at the ASGI edge, before the body is read; ``OmniGuard.check`` / ``acheck`` on entry) and gives
it back when its answer is done or its client leaves. A burst therefore sees its own earlier
requests.

The budget is in seconds. A request weighs ``units`` (1, plus its body size at the server edge,
see :func:`units_for_body`); ``max_batch`` units make a batch, which costs the measured time of a
recent batch (an average over recent batches, fed by the batcher). A new reservation is refused
with :class:`~omniguard_plugins.errors.OverloadedError` when the whole batches it would wait for
(the one running now counts whole, however few it holds; when none runs, the batcher's wait for
company, up to ``FILL_WAIT_BATCHES`` of a batch's time, counts instead), plus
its own, plus the time it already waited before it got here (``waited_s``: the server's
event-loop lag, which a burst drives up), would take longer than the queue-delay bound plus one
batch. So no admitted caller waits longer than the bound plus its own batch. Nothing is refused
while fewer than ``max_batch`` reservations are held (they would share one batch), so one
request of any size gets in.

The queue-delay bound (``JudgeConfig.max_queue_delay_s``) is on by default: ``None`` means
derived, 2.5 recent batch times (at least 0.5 s, at most a quarter of ``timeout_s``): two full
batches may wait behind the one running, so the model never idles between batches under
overload, and the half batch left over absorbs the batcher's wait for company and timing noise
(a bound of exactly two batches would turn on a millisecond of jitter: one more or one fewer
batch admitted). ``0`` turns refusals off (reservations are still counted, for ``/healthz`` and
``/metrics``), for an app that prefers its checks to wait (then only the batcher's
``max_queued`` refuses work).

Deciding is O(1): a few additions under a lock that is never held for anything else (not the
batcher's lock), so an event loop never waits behind the model worker.

A reservation is *on its way* from when it is taken until its first check reaches the runner
(:meth:`Reservation.arrived`). The batcher reads :meth:`Admission.on_the_way` to wait a little
longer for company: in a burst the first admitted request reaches the queue tens of
milliseconds before the others (the event loop is busy answering the refused ones), and a batch
started with it alone would cost the rest a whole extra batch.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import OverloadedError

if TYPE_CHECKING:
    from .config import JudgeConfig

__all__ = ["FILL_WAIT_BATCHES", "Admission", "AdmissionState", "Reservation", "held", "units_for_body"]

#: a batch's time assumed before the first one is measured
DEFAULT_BATCH_S = 0.5
#: the batcher waits at most this many batch times for callers admitted and on their way (one left
#: behind would wait a whole batch); admission counts that wait when no batch runs
FILL_WAIT_BATCHES = 1.0
#: the derived queue-delay bound: this many recent batch times (two batches waiting, half a batch of
#: slack; see the module docstring), within these limits
AUTO_BATCHES = 2.5
MIN_AUTO_DELAY_S = 0.5
#: at the server edge a body up to FREE_BYTES (a text check) weighs one unit, each BYTES_PER_UNIT more
#: one more, up to MAX_UNITS (a long request runs in a batch of its own; more weight would only refuse
#: it in an idle server)
FREE_BYTES = 4 * 1024
BYTES_PER_UNIT = 32 * 1024
MAX_UNITS = 8.0

_held: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar("omniguard_reservation", default=None)


def held() -> Reservation | None:
    """The reservation this task or thread runs under (the server's, taken at the edge), if any:
    a check made under it does not reserve again."""
    return _held.get()


def units_for_body(nbytes: int) -> float:
    """A request's weight from its body size, all the server edge knows before reading it."""
    return 1.0 + min(MAX_UNITS - 1.0, max(0, nbytes - FREE_BYTES) / BYTES_PER_UNIT)


@dataclass(frozen=True)
class AdmissionState:
    """What ``/healthz`` and ``/metrics`` show."""

    #: reservations held now (requests arrived and not yet answered)
    in_flight: int
    reserved_units: float
    #: expected seconds of model work reserved
    reserved_s: float
    #: the queue-delay bound in effect (0: refusals off)
    queue_delay_bound_s: float
    #: reserved_s may grow to this: the bound plus the batch running now
    budget_s: float
    #: the recent batch time and a unit's share of it; ``measured`` False: assumed, no batch yet
    batch_s: float
    unit_s: float
    measured: bool
    admitted: int
    refused: int

    def to_json(self) -> dict[str, Any]:
        return {"in_flight": self.in_flight, "reserved_s": round(self.reserved_s, 3),
                "budget_s": round(self.budget_s, 3), "queue_delay_bound_s": round(self.queue_delay_bound_s, 3),
                "batch_s": round(self.batch_s, 4), "unit_s": round(self.unit_s, 5), "measured": self.measured}


class Reservation:
    """Held from a request's arrival until its answer is done; release it once (a context
    manager, or :meth:`release`). While held as the current one (:meth:`current`), checks made
    in this context do not reserve again.

    Its units weigh only while it has model work coming: from arrival until its first check is
    done, and again while each later check runs (:meth:`busy`). In between it is *idle*: a
    gateway request waiting on its upstream LLM holds its place (it is still in flight) but not
    the model's time, so a server full of long chats does not refuse work its model has room for.
    A check started by an admitted request is never refused: its units come back unasked."""

    __slots__ = ("_admission", "_arrived", "_busy", "_idle", "_released", "units")

    def __init__(self, admission: Admission, units: float) -> None:
        self._admission = admission
        self.units = units
        self._released = False
        self._arrived = False
        self._idle = False
        self._busy = 0

    def arrived(self) -> None:
        """Its first check has reached the runner: it is no longer on its way (idempotent)."""
        if not self._arrived:
            self._admission._arrive(self)

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Around one check (the runner's drivers): the units weigh while it runs, and stop
        weighing when the last check running under this reservation is done."""
        self._admission._busy(self, +1)
        try:
            yield
        finally:
            self._admission._busy(self, -1)

    def release(self) -> None:
        self._admission._give_back(self)

    @contextmanager
    def current(self) -> Iterator[Reservation]:
        """Make this the reservation of the code run inside (asyncio tasks and ``to_thread``
        calls started there inherit it), so the judge's checks there count under it."""
        token = _held.set(self)
        try:
            yield self
        finally:
            _held.reset(token)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    """One judge's reservations: shared by its server and its in-process callers."""

    def __init__(self, *, max_batch: int, max_queue_delay_s: float | None = None, timeout_s: float = 120.0) -> None:
        self.max_batch = max(1, max_batch)
        #: None: derived from the batch time (see the module docstring); 0: refusals off
        self.max_queue_delay_s = max_queue_delay_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._units = 0.0
        self._count = 0
        self._batch_s: float | None = None
        #: reservations taken and not yet arrived (see :meth:`on_the_way`), and when the last was taken
        self._on_the_way = 0
        self._last_reserved_at = 0.0
        #: requests in the batch the model runs now (set by the batch worker): a batch that started
        #: short takes its whole time, and the requests after it need batches of their own
        self.running = 0
        self.admitted = 0
        self.refused = 0

    @classmethod
    def from_config(cls, config: JudgeConfig) -> Admission:
        return cls(max_batch=config.max_batch, max_queue_delay_s=config.max_queue_delay_s, timeout_s=config.timeout_s)

    # ------------------------------------------------------------------ the estimate

    def observe(self, size: int, elapsed_s: float) -> None:
        """A batch of ``size`` requests took ``elapsed_s`` (called by the batch worker)."""
        old = self._batch_s
        self._batch_s = elapsed_s if old is None else 0.8 * old + 0.2 * elapsed_s

    @property
    def in_flight(self) -> int:
        """Reservations held now (read without the lock: a snapshot)."""
        return self._count

    @property
    def batch_s(self) -> float:
        return self._batch_s if self._batch_s is not None else DEFAULT_BATCH_S

    @property
    def unit_s(self) -> float:
        """Expected seconds of model work per unit: a batch's time shared by a full batch (a
        batch costs about the same whatever its size on a GPU; a backend whose batches grow with
        their size is measured as such once full batches have run)."""
        return self.batch_s / self.max_batch

    def on_the_way(self, within_s: float) -> int:
        """Reservations whose checks have not reached the runner yet, when one was taken within
        the last ``within_s`` (0 otherwise: a reservation held long without a check, such as a
        gateway request waiting on its upstream model, is not coming soon). A snapshot."""
        if self._on_the_way and time.monotonic() - self._last_reserved_at < within_s:
            return self._on_the_way
        return 0

    def bound_s(self, override: float | None = None) -> float:
        """The queue-delay bound in effect: ``override`` (the server's setting), else the
        configured one, else derived from the batch time and the timeout. 0: refusals off."""
        bound = override if override is not None else self.max_queue_delay_s
        if bound is None:
            return min(self.timeout_s / 4.0, max(MIN_AUTO_DELAY_S, AUTO_BATCHES * self.batch_s))
        return max(0.0, bound)

    def state(self, bound_s: float | None = None) -> AdmissionState:
        bound = self.bound_s(bound_s)
        unit = self.unit_s
        budget = bound + self.batch_s if bound else 0.0
        return AdmissionState(self._count, self._units, self._units * unit, bound, budget, self.batch_s, unit,
                              self._batch_s is not None, self.admitted, self.refused)

    # ------------------------------------------------------------------ reserving

    def reserve(self, units: float = 1.0, *, bound_s: float | None = None, waited_s: float = 0.0) -> Reservation:
        """Reserve ``units`` now, or raise OverloadedError (nothing reserved) when the work
        already reserved plus these would wait past the bound. ``waited_s``: how long the caller
        has already waited before it got here (the server's event-loop lag in a burst), which
        its bound has already spent."""
        bound = self.bound_s(bound_s)
        batch = self.batch_s
        unit = batch / self.max_batch
        with self._lock:
            running = min(self.running, self._units)
            waiting = self._units + units - running
            # the batch running now (whole), or the wait for company of the one being filled; then whole batches
            first_s = batch if running else FILL_WAIT_BATCHES * batch if self.max_batch > 1 else 0.0
            need_s = first_s + math.ceil(waiting / self.max_batch - 1e-9) * batch
            need_s += waited_s
            if bound and self._count >= self.max_batch and need_s > bound + batch:
                self.refused += 1
                over_s = need_s - (bound + batch)
                reserved_s = self._units * unit
            else:
                self._units += units
                self._count += 1
                self._on_the_way += 1
                self._last_reserved_at = time.monotonic()
                self.admitted += 1
                return Reservation(self, units)
        raise OverloadedError(
            f"the judge is overloaded (~{reserved_s:.2f} s of model work reserved by {self._count} requests; a new "
            f"one would wait past the {bound:.2f} s queue-delay bound); retry later",
            retry_after_s=max(1.0, math.ceil(over_s + batch)))

    @contextmanager
    def reserved(self, units: float = 1.0) -> Iterator[OverloadedError | None]:
        """For the judge's doors: yields None while a reservation is held for the block (or one
        is already held by the caller's context, e.g. the server's), or the OverloadedError
        that refused it."""
        if held() is not None:
            yield None
            return
        try:
            reservation = self.reserve(units)
        except OverloadedError as exc:
            yield exc
            return
        with reservation, reservation.current():
            yield None

    # ------------------------------------------------------------------ a reservation's life (under the lock)

    def _arrive(self, reservation: Reservation) -> None:
        with self._lock:
            if not reservation._arrived:
                reservation._arrived = True
                if not reservation._released:
                    self._on_the_way = max(0, self._on_the_way - 1)

    def _busy(self, reservation: Reservation, step: int) -> None:
        """One more (+1) or one fewer (-1) check running under ``reservation``: its units weigh
        while any runs (checks under one reservation may run in several threads)."""
        with self._lock:
            reservation._busy += step
            idle = reservation._busy == 0
            if reservation._released or reservation._idle == idle:
                return
            reservation._idle = idle
            self._units = max(0.0, self._units + (-reservation.units if idle else reservation.units))

    def _give_back(self, reservation: Reservation) -> None:
        with self._lock:
            if reservation._released:
                return
            reservation._released = True
            if not reservation._arrived:
                self._on_the_way = max(0, self._on_the_way - 1)
            self._count -= 1
            weighs = 0.0 if reservation._idle else reservation.units
            self._units = max(0.0, self._units - weighs) if self._count else 0.0
