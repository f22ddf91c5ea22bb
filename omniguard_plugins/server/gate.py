"""The gate: pure ASGI middleware in front of every route, where abuse is refused cheaply.

Everything here runs before a route reads anything, so a refused request never reaches a JSON
parser or the model, and costs microseconds: the bearer token (compared in constant time), the
content type, a per-client limit on requests in flight, admission (a reservation on the judge
taken the moment the request arrives, before its body is read, weighed by its declared size:
past the queue-delay bound it is answered 429 with ``Retry-After`` at once; see
:mod:`omniguard_plugins.admission`), the body cap and a deadline on reading it (a slow-loris
client gets 408 instead of holding a connection forever), and the nesting depth of the JSON.
While the route runs, the gate watches the connection: a client that goes away has its request
cancelled, so its work is dropped instead of finishing for nobody. The reservation is given back
when the response is done or the client has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import numpy as np
from starlette.types import ASGIApp

from ..admission import Admission, Reservation, units_for_body
from ..errors import OverloadedError
from .metrics import ServerMetrics
from .serving import ServingError

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "MAX_JSON_DEPTH", "Gate", "json_depth"]

#: a body must arrive within this many seconds of the request line
DEFAULT_BODY_TIMEOUT_S = 30.0
#: a body still arriving after this long gives its reservation back until it is all here (a
#: slow or hostile client must not hold the admission budget for the whole body timeout)
SLOW_BODY_S = 1.0
#: OpenAI messages nest 5 deep ({messages: [{content: [{image_url: {url}}]}]}); policies 4
MAX_JSON_DEPTH = 32

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_CHUNK = 1 << 16
_CLIENT_GONE = 499  # nginx's "client closed request", for metrics only


class LoopLag:
    """How late the event loop is running, from a timer that re-arms itself every ``period_s``:
    while the loop is busy (a burst being accepted and answered) the timer is overdue, and a
    request read now has waited about that long already. Lateness within one period is a loop
    at work, not behind, and reads 0. The timer runs while readings come (it stops a second after
    the last, so an idle server is not woken 100 times a second) and starts again on the next,
    in the loop that reads it; a timer callback, not a task, so nothing is left pending when the
    loop closes."""

    IDLE_S = 1.0

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._last_read = 0.0

    def seconds(self) -> float:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._last_read = now
        if self._loop is not loop:
            self._loop = loop
            self._tick()
        return max(0.0, now - self._due - self.period_s)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        now = loop.time()
        if now - self._last_read > self.IDLE_S:
            self._loop = None  # nobody is reading: stop until the next reading
            return
        self._due = now + self.period_s
        loop.call_at(self._due, self._tick)


def json_depth(body: bytes, limit: int | None = None) -> int:
    """How deep a JSON document nests, in C-speed passes, so a body of a million ``[`` is
    refused before any recursive parser sees it: escaped backslashes and quotes go, then all
    but quotes and brackets (base64 media leave nothing), then the strings. With ``limit``, it
    stops at the first stretch deeper than that (a hostile body costs one chunk, not all)."""
    skeleton = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    brackets = _STRING.sub(b"", skeleton).replace(b'"', b"")
    codes = np.frombuffer(brackets, dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, len(codes), _CHUNK):
        chunk = codes[start:start + _CHUNK]
        levels = np.cumsum(np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int32)) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
        if limit is not None and deepest > limit:
            break
    return deepest


class Gate:
    """See the module docstring. ``tokens`` empty: no auth (clients are then told apart by
    address for the per-client limit). ``admission``: the judge's reservations, taken for every
    ``POST /v1/*`` under ``queue_delay_s`` (None: the judge's own bound)."""

    def __init__(
        self, app: ASGIApp, *, tokens: Sequence[str], max_body_bytes: int, metrics: ServerMetrics,
        admission: Admission | None = None, queue_delay_s: float | None = None, max_per_client: int = 0,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S, max_json_depth: int = MAX_JSON_DEPTH,
        error_response: Callable[[BaseException, ServerMetrics | None], Any],
        routes: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens if t]
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.admission = admission
        self.queue_delay_s = queue_delay_s
        self.max_per_client = max_per_client
        self.body_timeout_s = body_timeout_s
        self.max_json_depth = max_json_depth
        self._error_response = error_response
        self._in_flight: Counter[str] = Counter()
        #: the app's paths, read once on the first request (after every route is added): metrics
        #: label only these, so clients cannot mint label values
        self._routes_of = routes
        self._routes: frozenset[str] | None = None
        self._lag = LoopLag()

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._routes is None:
            self._routes = self._routes_of()
        route = scope["path"] if scope["path"] in self._routes else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_count(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        client: str | None = None
        reservation: Reservation | None = None
        try:
            refusal: Exception | None
            refusal, key = self._authorise(scope)
            work = scope["method"] == "POST" and scope["path"].startswith("/v1/")
            if refusal is None and work:
                refusal = self._content_type(scope)
            if refusal is None and work and self.max_per_client:
                if self._in_flight[key] >= self.max_per_client:
                    refusal = OverloadedError(f"this client has {self._in_flight[key]} requests in flight, the limit "
                                              f"is {self.max_per_client}; wait for one to finish", retry_after_s=1.0)
                else:
                    client = key
                    self._in_flight[key] += 1
            if refusal is None and work and self.admission is not None:
                refusal, reservation = self._reserve(scope)
            body = b""
            if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
                slow = False

                def give_back() -> None:  # a trickling body must not hold the budget meanwhile
                    nonlocal reservation, slow
                    if reservation is not None:
                        reservation.release()
                        reservation, slow = None, True

                body, refusal, gone = await self._read_body(scope, receive, give_back)
                if gone:  # nobody is left to answer
                    status["code"] = _CLIENT_GONE
                    return
                if slow and refusal is None:  # its body is here now: it reserves like a new arrival
                    refusal, reservation = self._reserve(scope)
            if refusal is not None:
                await self._error_response(refusal, self.metrics)(scope, receive, send_and_count)
                return
            if reservation is None:
                gone = await self._run_app(scope, body, receive, send_and_count)
            else:
                with reservation.current():  # the judge's checks in this request count under it
                    gone = await self._run_app(scope, body, receive, send_and_count)
            if gone:
                status["code"] = _CLIENT_GONE
        finally:
            if reservation is not None:
                reservation.release()
            if client is not None:
                self._in_flight[client] -= 1
                if not self._in_flight[client]:
                    del self._in_flight[client]
            self.metrics.observe_request(route, str(status["code"]), time.perf_counter() - started)

    # ------------------------------------------------------------------ checks

    def _authorise(self, scope: _Scope) -> tuple[ServingError | None, str]:
        """(refusal, the client's key for the per-client limit)."""
        if not self.tokens:
            return None, (scope.get("client") or ("unknown",))[0]
        if not scope["path"].startswith("/v1/"):
            return None, "open"
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        given = given.strip()
        matched = -1
        for i, token in enumerate(self.tokens):  # every token compared: timing tells nothing
            if hmac.compare_digest(given, token) and scheme.lower() == b"bearer":
                matched = i
        if matched < 0:
            return ServingError(401, "missing or invalid bearer token; send 'Authorization: Bearer <token>'",
                                type="authentication_error", code="invalid_api_key"), ""
        return None, f"token#{matched}"

    def _content_type(self, scope: _Scope) -> ServingError | None:
        value = dict(scope.get("headers") or ()).get(b"content-type")
        if value is None:  # a bare client (curl --data-binary, a raw socket): JSON is all we read
            scope["headers"] = [*(scope.get("headers") or ()), (b"content-type", b"application/json")]
            return None
        kind = value.split(b";", 1)[0].strip().lower()
        if kind == b"application/json" or kind.endswith(b"+json"):
            return None
        shown = kind.decode("latin-1")[:60]
        return ServingError(415, f"content type {shown!r} is not accepted; send JSON with 'Content-Type: "
                                 "application/json'", code="unsupported_media_type")

    def _reserve(self, scope: _Scope) -> tuple[OverloadedError | None, Reservation | None]:
        """(refusal, reservation): the request's reservation, weighed by its declared size."""
        assert self.admission is not None
        try:
            return None, self.admission.reserve(units_for_body(_declared_length(scope)), bound_s=self.queue_delay_s,
                                                waited_s=self._lag.seconds())
        except OverloadedError as exc:
            return exc, None

    async def _read_body(self, scope: _Scope, receive: _Receive,
                         slow: Callable[[], None] = lambda: None) -> tuple[bytes, ServingError | None, bool]:
        """(body, refusal, client gone). Capped in size and in time; ``slow()`` is called once
        when the body has not all arrived within ``SLOW_BODY_S``."""
        too_big = ServingError(413, f"request body is over the {self.max_body_bytes}-byte limit",
                               code="request_too_large")
        if _declared_length(scope) > self.max_body_bytes:
            return b"", too_big, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        slow_at: float | None = loop.time() + SLOW_BODY_S
        chunks: list[bytes] = []
        size = 0
        while True:
            until = deadline if slow_at is None else min(deadline, slow_at)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, until - loop.time()))
            except asyncio.TimeoutError:
                if slow_at is not None and loop.time() < deadline:
                    slow_at = None
                    slow()
                    continue
                return b"", ServingError(408, f"the request body did not arrive within {self.body_timeout_s:g} s",
                                         code="request_timeout"), False
            if message["type"] == "http.disconnect":
                return b"", None, True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", too_big, False
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and json_depth(body, self.max_json_depth) > self.max_json_depth:
            return b"", ServingError(400, f"the JSON nests deeper than {self.max_json_depth} levels",
                                     code="invalid_request"), False
        return body, None, False

    # ------------------------------------------------------------------ running the route

    async def _run_app(self, scope: _Scope, body: bytes, receive: _Receive, send: _Send) -> bool:
        """Run the route with the body replayed; cancel it if the client disconnects first.
        True when the client went away."""
        gone = asyncio.Event()
        replayed = False

        async def app_receive() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        route = asyncio.ensure_future(self.app(scope, app_receive, send))
        watcher = asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait({route, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if route in done:
                route.result()
                return False
            route.cancel()  # the judge drops work whose caller is gone
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await route
            return True
        finally:
            for task in (route, watcher):
                if not task.done():  # also when this request itself is cancelled (shutdown)
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher


def _declared_length(scope: _Scope) -> int:
    """The body size the client declared (0 when it did not, or declared nonsense)."""
    declared = dict(scope.get("headers") or ()).get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else 0
