"""Drives flows (see :mod:`._checkflow`) to completion: result cache, the backend's caller-side
``prepare``, the micro-batcher, and one deadline for everything a call waits on.

Sync and async differ only in how they wait on the batcher's futures (``drive`` / ``adrive``).
Every flow is advanced before any of their requests is submitted, so slow decoding of one item
cannot split a ``check_many`` batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ._checkflow import Flow, Step
from ._lru import LRU
from .admission import held
from .backends.base import Backend, GenerationRequest, GenerationResult
from .batching import MicroBatcher
from .errors import BackendError, JudgeTimeout, OmniGuardError

__all__ = ["Runner"]

#: a flow in flight: its index, its futures, the cache keys to remember, whether all were hits
_Pending = list[tuple[int, Flow, list["Future[GenerationResult]"], list[str], bool]]
_TIMEOUT = "no verdict within timeout_s; the model is overloaded or stuck"


class Runner:
    def __init__(self, backend: Callable[[], Backend], batcher: Callable[[], MicroBatcher], *, cache_size: int) -> None:
        self._backend = backend
        self._batcher = batcher
        self.results: LRU[str, GenerationResult] = LRU(cache_size, lock=True)
        self.cache_hits = 0

    # ------------------------------------------------------------------ drivers

    def drive(self, flows: list[Flow], timeout_s: float) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        done: list[Any] = [None] * len(flows)
        with _busy():
            pending = self._advance([(i, flow, None) for i, flow in enumerate(flows)], done)
            while pending:
                results = _wait_sync([f for _, _, fs, _, _ in pending for f in fs], deadline)
                pending = self._advance(self._steps(pending, results), done)
        return done

    async def adrive(self, flows: list[Flow], timeout_s: float, *, offload: bool) -> list[Any]:
        """As :meth:`drive`; with ``offload`` every advance (rendering, decoding, the backend's
        preprocessing, a first model load) runs in a worker thread, off the event loop."""
        deadline = time.monotonic() + timeout_s
        done: list[Any] = [None] * len(flows)

        async def advance(steps: list[tuple[int, Flow, Step | None]]) -> _Pending:
            return await asyncio.to_thread(self._advance, steps, done) if offload else self._advance(steps, done)

        with _busy():
            pending = await advance([(i, flow, None) for i, flow in enumerate(flows)])
            while pending:
                results = await _wait_async([f for _, _, fs, _, _ in pending for f in fs], deadline)
                pending = await advance(self._steps(pending, results))
        return done

    # ------------------------------------------------------------------ one round

    def _steps(self, pending: _Pending, results: list[Any]) -> list[tuple[int, Flow, Step | None]]:
        steps: list[tuple[int, Flow, Step | None]] = []
        pos = 0
        for i, flow, futures, keys, cached in pending:
            chunk = results[pos : pos + len(futures)]
            pos += len(futures)
            for key, result in zip(keys, chunk):
                if key and isinstance(result, GenerationResult):
                    self.results.put(key, result)
            steps.append((i, flow, Step(chunk, cached)))
        return steps

    def _advance(self, steps: list[tuple[int, Flow, Step | None]], done: list[Any]) -> _Pending:
        wanted: list[tuple[int, Flow, list[GenerationRequest]]] = []
        for i, flow, step in steps:
            try:
                requests = flow.send(step) if step is not None else next(flow)
            except StopIteration as stop:
                done[i] = stop.value
                continue
            wanted.append((i, flow, requests))
        pending: _Pending = []
        for i, flow, requests in wanted:
            futures, keys, all_cached = self._submit(requests)
            pending.append((i, flow, futures, keys, all_cached))
        reservation = held()
        if reservation is not None:  # its checks are queued (or answered at once): the batcher stops waiting for it
            reservation.arrived()
        return pending

    def _submit(self, requests: list[GenerationRequest]) -> tuple[list[Future[GenerationResult]], list[str], bool]:
        futures: list[Future[GenerationResult]] = []
        keys: list[str] = []
        all_cached = bool(requests)
        for request in requests:
            future: Future[GenerationResult] = Future()
            try:
                backend = self._backend()  # a first call loads the model here (off the loop when offloaded)
                key = _cache_key(backend.model_id, request) if self.results.max_items else ""
                hit = self.results.get(key) if key else None
                if hit is not None:
                    self.cache_hits += 1
                    future.set_result(hit)
                    key = ""
                else:
                    all_cached = False
                    future = self._batcher().submit(_prepared(backend, request))
            except OmniGuardError as exc:  # the model cannot load, the processor rejects the media, overload
                all_cached = False
                key = ""
                future.set_exception(exc)
            futures.append(future)
            keys.append(key)
        return futures, keys, all_cached


def _busy() -> AbstractContextManager[None]:
    """The held reservation weighs while these checks run (see ``admission.Reservation``)."""
    reservation = held()
    return reservation.busy() if reservation is not None else nullcontext()


def _prepared(backend: Backend, request: GenerationRequest) -> GenerationRequest:
    """The backend's CPU preprocessing in the calling thread; a bug in it is a BackendError."""
    try:
        return backend.prepare(request)
    except OmniGuardError:
        raise
    except Exception as exc:  # noqa: BLE001 - a preprocessing bug must not crash the host app
        raise BackendError(f"preprocessing failed ({type(exc).__name__}: {exc})".splitlines()[0][:300]) from exc


def _cache_key(model_id: str, request: GenerationRequest) -> str:
    h = hashlib.sha256()
    for piece in (model_id, *map(str, request.batch_key), request.prefix, request.prompt):
        h.update(piece.encode())
        h.update(b"\0")
    for m in request.media:
        h.update(repr(m.key).encode())
        h.update(b"\0")
    return h.hexdigest()


def _wait_sync(futures: list[Future[GenerationResult]], deadline: float) -> list[Any]:
    out: list[Any] = []
    for future in futures:
        try:
            out.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            future.cancel()
            out.append(JudgeTimeout(_TIMEOUT))
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C in the waiting thread is the caller stopping, not a failed check: never a verdict
            for waiting in futures:
                waiting.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001
            out.append(exc)
    return out


async def _wait_async(futures: list[Future[GenerationResult]], deadline: float) -> list[Any]:
    wrapped = [asyncio.wrap_future(f) for f in futures]
    timeout = max(0.0, deadline - time.monotonic())
    try:
        finished, _ = await asyncio.wait(wrapped, timeout=timeout) if wrapped else (set(), set())
    except asyncio.CancelledError:  # the caller went away: its requests must not keep batch slots
        for future in futures:
            future.cancel()
        raise
    out: list[Any] = []
    for future, awaited in zip(futures, wrapped):
        if awaited in finished:
            exc = awaited.exception()
            out.append(exc if exc is not None else awaited.result())
        else:
            awaited.cancel()
            future.cancel()
            out.append(JudgeTimeout(_TIMEOUT))
    return out
