"""The micro-batcher: one worker thread owns the backend; callers wait on futures.

Concurrent checks from threads and event loops (LangChain, LlamaIndex, NeMo and the server in
one process) land in one queue; the worker takes up to ``max_batch`` of them, waiting at most
``max_wait_ms`` for company, and runs them as one backend call. Each result goes back to its
own future, so sync callers block on ``Future.result`` and async callers await a wrapped future.

A guard sits in front of every request, so overload and faults are handled here, not hoped away:

- **Admission.** Callers reserve their model work when they arrive, before this queue sees
  them (:mod:`~omniguard_plugins.admission`; each batch's time here feeds that estimate). Behind
  it the queue is bounded by requests and by the decoded media bytes it holds; past either
  bound ``submit`` raises :class:`~omniguard_plugins.errors.OverloadedError` at once (a
  blocking verdict in process, a 429 in the server) instead of queueing work that would only
  time out while memory grows.
- **Short work moves past long work.** A batch pads every row to its longest, so one long
  request in a batch makes every short one as slow as itself. A request costing more than
  ``long_cost`` (prompt characters plus media, ~512 decoded bytes counting as one character)
  runs on its own, and short requests queued behind it go first, at most ``_MAX_PASSES`` times
  (no starvation). A forward pass already running cannot be preempted: that needs chunked
  prefill in the backend.
- **Dead work is dropped.** Requests whose caller cancelled (timed out, went away) are skipped;
  requests older than ``max_queue_wait_s`` fail with JudgeTimeout without running.
- **The worker is supervised.** If it dies, the batch it was running fails with a one-line
  BackendError and a new worker starts (a few times a minute at most, then the batcher reports
  broken and refuses work rather than hang). :meth:`health` tells ready, overloaded and broken
  apart (including a batch stuck past ``stuck_after_s``), for ``/healthz``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._batch_parts import BatcherHealth, BatchStats, State, backend_failure, media_nbytes
from .admission import FILL_WAIT_BATCHES
from .backends.base import Backend, GenerationRequest, GenerationResult
from .errors import BackendError, ConfigError, JudgeTimeout, OmniGuardError, OverloadedError

if TYPE_CHECKING:
    from .admission import Admission
    from .config import JudgeConfig

__all__ = ["BatchStats", "BatcherHealth", "MicroBatcher", "media_nbytes"]

log = logging.getLogger("omniguard")

#: decoded media bytes that count as one prompt character in a batch's cost (an image's
#: ~1 MP = 3 MB is ~1.3K tokens, ~5K characters; audio and video frames land close to it)
MEDIA_BYTES_PER_CHAR = 512
#: a request costing more than this (in prompt characters) runs alone: ~2K tokens, 3x a typical
#: check under the default policy
DEFAULT_LONG_COST = 8192
#: how often short batches may go ahead of a long request at the head of the queue
_MAX_PASSES = 4
#: worker deaths tolerated per minute before the batcher reports broken
_MAX_RESTARTS_PER_MIN = 5
#: consecutive failed requests (with no success) after which the backend counts as broken,
#: while the last failure is recent
_BROKEN_AFTER_FAILURES = 5
_BROKEN_MEMORY_S = 30.0


@dataclass(eq=False)
class _Item:
    request: GenerationRequest
    future: Future[GenerationResult]
    cost: int
    media_bytes: int
    key: tuple[str, int, bool]
    enqueued: float
    passed: int = 0


class MicroBatcher:
    def __init__(
        self,
        backend: Backend,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        max_queued: int = 256,
        max_queued_media_bytes: int = 1 << 30,
        long_cost: int = DEFAULT_LONG_COST,
        max_queue_wait_s: float | None = None,
        stuck_after_s: float = 120.0,
        admission: Admission | None = None,
    ) -> None:
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        #: 0 means unbounded
        self.max_queued = max_queued
        self.max_queued_media_bytes = max_queued_media_bytes
        self.long_cost = long_cost
        self.max_queue_wait_s = max_queue_wait_s
        self.stuck_after_s = stuck_after_s
        self.stats = BatchStats()
        #: the reservations callers take on arrival (see :mod:`~omniguard_plugins.admission`): each
        #: batch's time feeds its estimate of a request's model work
        self.admission = admission
        self._on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._media_bytes = 0
        self._running: list[_Item] = []
        self._running_since: float | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._deaths: deque[float] = deque()
        self._broken: str | None = None
        self._failures = 0
        self._last_failure = (0.0, "")
        self._batch_s = 0.0  # moving average of a batch's time: Retry-After and the expected wait
        self._closed = False

    @classmethod
    def from_config(
        cls, backend: Backend, config: JudgeConfig, *, on_batch: Callable[[int, float], None] | None = None,
        admission: Admission | None = None,
    ) -> MicroBatcher:
        """The batcher a judge configuration asks for (batch size, waits and queue bounds)."""
        return cls(backend, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, on_batch=on_batch,
                   max_queued=config.max_queued, max_queued_media_bytes=config.max_queued_media_bytes,
                   max_queue_wait_s=config.timeout_s, stuck_after_s=config.timeout_s, admission=admission)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not those whose caller has already given up)."""
        with self._cond:
            self._drop_dead()
            return len(self._pending)

    # ------------------------------------------------------------------ callers

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        """Queue one request. Raises OverloadedError when the queue is full (nothing queued) and
        BackendError when the worker cannot run; a closed batcher gives a failed future."""
        future: Future[GenerationResult] = Future()
        if self._closed:
            future.set_exception(BackendError("the judge is closed"))
            return future
        media_bytes = media_nbytes(request)
        cost = len(request.prompt) + len(request.prefix) + media_bytes // MEDIA_BYTES_PER_CHAR
        item = _Item(request, future, cost, media_bytes, request.batch_key, time.monotonic())
        with self._cond:
            self._admit(media_bytes)
            self._ensure_worker()
            self._pending.append(item)
            self._media_bytes += media_bytes
            self._cond.notify()
        return future

    def health(self) -> BatcherHealth:
        with self._cond:
            self._drop_dead()
            now = time.monotonic()
            running_s = now - self._running_since if self._running_since is not None else 0.0
            state, reason = self._state(now, running_s)
            return BatcherHealth(state, reason, len(self._pending), self._media_bytes, running_s,
                                 self._retry_after(), self._expected_wait(running_s))

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop taking work; the worker finishes what is queued (within ``timeout``), and
        anything still queued after that fails with BackendError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            left = list(self._pending)
            self._pending.clear()
            self._media_bytes = 0
        for item in left:
            _fail(item, BackendError("the judge closed before this request ran"))

    # ------------------------------------------------------------------ admission and health

    def _admit(self, media_bytes: int) -> None:
        """Called under the lock: refuse now rather than queue what cannot be served in time."""
        if self._broken:
            raise BackendError(self._broken)
        if self._running_since is not None and time.monotonic() - self._running_since > self.stuck_after_s:
            raise BackendError(f"the model has been running one batch for over {self.stuck_after_s:g} s; "
                               "the backend looks stuck (see /healthz)")
        if self.max_queued and len(self._pending) >= self.max_queued:
            self._drop_dead()  # slots held by callers that gave up are free
        depth = len(self._pending)
        if self.max_queued and depth >= self.max_queued:
            self.stats.rejected += 1
            raise OverloadedError(f"the judge is overloaded ({depth} requests queued, the limit is "
                                  f"max_queued={self.max_queued}); retry later", retry_after_s=self._retry_after())
        bound = self.max_queued_media_bytes
        if bound and depth and self._media_bytes + media_bytes > bound:
            # an empty queue admits one request of any size: the media limits already bound it
            self.stats.rejected += 1
            raise OverloadedError(f"the judge is overloaded ({self._media_bytes} bytes of decoded media queued, "
                                  f"the limit is max_queued_media_bytes={bound}); retry later",
                                  retry_after_s=self._retry_after())

    def _state(self, now: float, running_s: float) -> tuple[State, str]:
        if self._closed:
            return "broken", "the judge is closed"
        if self._broken:
            return "broken", self._broken
        if running_s > self.stuck_after_s:
            return "broken", f"the model has been running one batch for {running_s:.0f} s; the backend looks stuck"
        failed_at, kind = self._last_failure
        if self._failures >= _BROKEN_AFTER_FAILURES and now - failed_at < _BROKEN_MEMORY_S:
            return "broken", f"the backend failed the last {self._failures} requests ({kind})"
        if self.max_queued and len(self._pending) >= self.max_queued:
            return "overloaded", f"{len(self._pending)} requests queued (max_queued={self.max_queued})"
        if self.max_queued_media_bytes and self._media_bytes >= self.max_queued_media_bytes:
            return "overloaded", f"{self._media_bytes} bytes of media queued"
        return "ready", ""

    def _expected_wait(self, running_s: float) -> float:
        """When a request admitted now would start: what is left of the running batch plus the
        full batches queued ahead of it, at the recent batch time."""
        if self._running_since is None and not self._pending:
            return 0.0
        left = max(0.0, self._batch_s - running_s) if self._running_since is not None else 0.0
        return left + (len(self._pending) // self.max_batch) * self._batch_s

    def _retry_after(self) -> float:
        """When a refused caller may find room: the batches ahead of it times a batch's time."""
        batches = math.ceil((len(self._pending) + 1) / self.max_batch)
        return max(1.0, math.ceil(batches * self._batch_s))

    def _ensure_worker(self) -> None:
        """Called under the lock: start the worker, or restart it if it died."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._thread is not None:  # it died without passing through _died (killed mid-cleanup)
            self._record_death()
        if self._broken:
            raise BackendError(self._broken)
        self._thread = threading.Thread(target=self._run, name="omniguard-batcher", daemon=True)
        self._thread.start()

    def _record_death(self) -> None:
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > 60.0:
            self._deaths.popleft()
        self.stats.worker_restarts += 1
        if len(self._deaths) > _MAX_RESTARTS_PER_MIN:
            self._broken = (f"the batch worker died {len(self._deaths)} times in a minute; "
                            "see the log for the cause and restart the process")

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - a dead worker must not leave callers hanging
            self._died(exc)

    def _died(self, exc: BaseException) -> None:
        log.error("omniguard: the batch worker died (%s); restarting it", type(exc).__name__, exc_info=exc)
        with self._cond:
            lost, self._running, self._running_since = self._running, [], None
            self._thread = None
            self._record_death()
            left: list[_Item] = []
            if self._broken:
                left, self._media_bytes = list(self._pending), 0
                self._pending.clear()
            elif self._pending and not self._closed:
                self._ensure_worker()
        for item in lost:
            _fail(item, BackendError(f"the batch worker died while running this request ({type(exc).__name__}); "
                                     "retry it"))
        for item in left:
            _fail(item, BackendError(self._broken or "the batch worker is gone"))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._pending:
                        if self._closed:
                            return
                        self._cond.wait()
                        continue
                    if len(self._pending) >= self.max_batch or self._closed:
                        break
                    wait = self._pending[0].enqueued + self.max_wait_s - time.monotonic()
                    if wait <= 0:
                        wait = self._fill_wait()
                        if wait <= 0:
                            break
                    self._cond.wait(wait)
                batch = self._select()
                self._running = batch
                self._running_since = time.monotonic() if batch else None
            if self.admission is not None:
                self.admission.running = len(batch)
            if batch:
                self._run_group(batch)
            with self._cond:
                self._running, self._running_since = [], None
            if self.admission is not None:
                self.admission.running = 0

    def _fill_wait(self) -> float:
        """Called under the lock once ``max_wait_ms`` is up: how long to go on waiting for callers
        that admission let in and whose checks have not reached this queue yet (a burst's first
        request arrives here tens of milliseconds before the rest, while the event loop answers the
        refused ones). At most ``FILL_WAIT_BATCHES`` of a batch's time after the head arrived,
        polled in short steps (a caller that gives up on the way does not notify)."""
        if self.admission is None or not self._batch_s:
            return 0.0
        window = FILL_WAIT_BATCHES * self._batch_s
        left = self._pending[0].enqueued + window - time.monotonic()
        if left <= 0 or not self.admission.on_the_way(window):
            return 0.0
        return min(left, max(self.max_wait_s, 0.002))

    def _select(self) -> list[_Item]:
        """Called under the lock: the next batch, taken out of the queue (see the module doc)."""
        self._drop_dead()
        if not self._pending:
            return []
        head = self._pending[0]
        seed = head
        if head.cost > self.long_cost and head.passed < _MAX_PASSES:
            seed = next((it for it in self._pending if it.cost <= self.long_cost), head)
        batch = [seed]
        for item in self._pending if seed.cost <= self.long_cost else ():
            if len(batch) >= self.max_batch:
                break
            if item is not seed and item.key == seed.key and item.cost <= self.long_cost:
                batch.append(item)
        chosen = set(map(id, batch))
        keep: deque[_Item] = deque()
        for item in self._pending:
            if id(item) in chosen:
                self._media_bytes -= item.media_bytes
            else:
                if item.enqueued < seed.enqueued:
                    item.passed += 1
                keep.append(item)
        self._pending = keep
        return [item for item in batch if item.future.set_running_or_notify_cancel()]

    def _drop_dead(self) -> None:
        now = time.monotonic()
        keep: deque[_Item] = deque()
        for item in self._pending:
            expired = self.max_queue_wait_s is not None and now - item.enqueued > self.max_queue_wait_s
            if item.future.cancelled():
                self.stats.cancelled += 1
            elif expired:
                self.stats.expired += 1
                _fail(item, JudgeTimeout(f"waited over {self.max_queue_wait_s:g} s in the judge's queue; "
                                         "the model is overloaded"))
            else:
                keep.append(item)
                continue
            self._media_bytes -= item.media_bytes
        self._pending = keep

    def _run_group(self, group: Sequence[_Item]) -> None:
        started = time.perf_counter()
        try:
            results = self.backend.generate([item.request for item in group])
            if len(results) != len(group):
                raise BackendError(f"backend returned {len(results)} results for {len(group)} requests")
        except BaseException as exc:  # noqa: BLE001 - the worker must survive anything a backend does
            self.stats.backend_errors += 1
            if len(group) > 1:
                # isolate the request that broke the batch by halves (2 log n calls for one bad
                # request, not n); the others still get answers
                log.warning("batch of %d failed (%s); retrying it in halves", len(group), type(exc).__name__)
                half = len(group) // 2
                self._run_group(group[:half])
                self._run_group(group[half:])
                return
            err = exc if isinstance(exc, OmniGuardError) else backend_failure(exc)
            with self._cond:
                self._failures += 1
                self._last_failure = (time.monotonic(), err.kind)
            _fail(group[0], err)
            return
        elapsed = time.perf_counter() - started
        with self._cond:
            self._failures = 0
            self._batch_s = elapsed if not self._batch_s else 0.8 * self._batch_s + 0.2 * elapsed
        if self.admission is not None:
            self.admission.observe(len(group), elapsed)
        self.stats.batches += 1
        self.stats.requests += len(group)
        self.stats.batch_sizes[len(group)] += 1
        self.stats.busy_s += elapsed
        if self._on_batch is not None:
            try:
                self._on_batch(len(group), elapsed)
            except Exception:  # noqa: BLE001 - a metrics hook must not break judging
                log.exception("on_batch hook failed")
        for item, result in zip(group, results):
            if not item.future.done():
                item.future.set_result(result)


def _fail(item: _Item, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
