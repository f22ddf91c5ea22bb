"""The micro-batcher: one worker thread owns the backend; callers wait on futures.

Concurrent checks from threads and event loops (LangChain, LlamaIndex, NeMo and the server in
one process) land in one queue; the worker takes up to ``max_batch`` of them, waiting at most
``max_wait_ms`` for company, and runs them as one backend call. Each result goes back to its
own future, so sync callers block on ``Future.result`` and async callers await a wrapped future.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from .backends.base import Backend, GenerationRequest, GenerationResult
from .errors import BackendError, OmniGuardError

__all__ = ["BatchStats", "MicroBatcher"]

log = logging.getLogger("omniguard")

_STOP = object()


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    backend_errors: int = 0
    busy_s: float = 0.0

    @property
    def max_batch_seen(self) -> int:
        return max(self.batch_sizes, default=0)


class MicroBatcher:
    def __init__(
        self,
        backend: Backend,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        if self._closed:
            future.set_exception(BackendError("the judge is closed"))
            return future
        self._ensure_worker()
        self._queue.put((request, future))
        return future

    def close(self, timeout: float | None = 5.0) -> None:
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _ensure_worker(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="omniguard-batcher", daemon=True)
                self._thread.start()

    # ------------------------------------------------------------------ worker

    def _collect(self, first: object) -> tuple[list[tuple[GenerationRequest, Future[GenerationResult]]], bool]:
        items = [first]
        stop = False
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            items.append(item)
        live = [it for it in items if it[1].set_running_or_notify_cancel()]  # type: ignore[index]
        return live, stop  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            groups: dict[tuple[str, int, bool], list[tuple[GenerationRequest, Future[GenerationResult]]]] = defaultdict(list)
            for req, fut in batch:
                groups[req.batch_key].append((req, fut))
            for group in groups.values():
                self._run_group(group)
            if stop:
                return

    def _run_group(self, group: Sequence[tuple[GenerationRequest, Future[GenerationResult]]]) -> None:
        started = time.perf_counter()
        try:
            results = self.backend.generate([req for req, _ in group])
            if len(results) != len(group):
                raise BackendError(f"backend returned {len(results)} results for {len(group)} requests")
        except BaseException as exc:  # noqa: BLE001 - the worker must survive anything
            self.stats.backend_errors += 1
            if len(group) > 1:
                # isolate the request that broke the batch; the others still get answers
                log.warning("batch of %d failed (%s); retrying one by one", len(group), exc)
                for item in group:
                    self._run_group([item])
                return
            _, fut = group[0]
            fut.set_exception(exc if isinstance(exc, OmniGuardError) else _wrap(exc))
            return
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.requests += len(group)
        self.stats.batch_sizes[len(group)] += 1
        self.stats.busy_s += elapsed
        if self._on_batch is not None:
            try:
                self._on_batch(len(group), elapsed)
            except Exception:  # noqa: BLE001 - a metrics hook must not break judging
                log.exception("on_batch hook failed")
        for (_, fut), result in zip(group, results):
            fut.set_result(result)


def _wrap(exc: BaseException) -> BackendError:
    err = BackendError(f"backend failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))
    err.__cause__ = exc
    return err
