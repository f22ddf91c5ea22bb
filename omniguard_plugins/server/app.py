"""The ASGI app: thin routes over :class:`~omniguard_plugins.server.serving.GuardServing`.

Every error, wherever raised (auth and body cap in the gate, validation, serving, the judge),
goes through :func:`error_response` once and leaves as OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from ..errors import (
    BackendError,
    ConfigError,
    ContentError,
    JudgeTimeout,
    MediaError,
    MediaTooLarge,
    ModelLoadError,
    OmniGuardError,
)
from ..judge import OmniGuard
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .protocol import ChatCompletionRequest, ChatCompletionResponse, ErrorBody, ErrorResponse, GuardRequest, GuardResponse
from .serving import DEFAULT_JUDGE_MODEL, GuardServing, ServingError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "error_response"]

log = logging.getLogger("omniguard.server")

#: room for the largest media the default MediaLimits accept, base64-encoded (4/3) in JSON
DEFAULT_MAX_BODY_BYTES = 96 * 1024 * 1024

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def create_app(
    judge: OmniGuard | None = None,
    token: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout_s: float | None = None,
    model_name: str | None = None,
    judge_model_name: str = DEFAULT_JUDGE_MODEL,
    load_on_startup: bool = True,
) -> FastAPI:
    """The guard server as an ASGI app; mount it in your own app or serve it with uvicorn.

    ``judge`` defaults to ``OmniGuard.shared()``. With ``token`` set, every ``/v1/*`` route needs
    ``Authorization: Bearer <token>`` (``/healthz`` and ``/metrics`` stay open, as in vLLM).
    Chat completions for ``judge_model_name`` judge their messages and answer in Llama Guard's
    short form; for any other name they are raw generations from the checkpoint.
    """
    judge = judge if judge is not None else OmniGuard.shared()
    serving = GuardServing(judge, request_timeout_s=request_timeout_s, model_name=model_name,
                           judge_model_name=judge_model_name)
    metrics = ServerMetrics(judge)
    judge.add_listener(metrics.on_verdict)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load_on_startup:
            # load the model before the port opens, so /healthz answering means ready
            await asyncio.to_thread(lambda: judge.load().batcher)
        yield

    app = FastAPI(title="OmniGuard", version=_version(), lifespan=lifespan)
    app.state.serving = serving
    app.state.metrics = metrics

    @app.exception_handler(Exception)
    async def _any_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, metrics)

    for known in (RequestValidationError, StarletteHTTPException, ServingError, OmniGuardError):
        app.add_exception_handler(known, _any_error)  # type: ignore[arg-type]

    @app.post("/v1/guard", response_model=GuardResponse)
    async def guard(req: GuardRequest) -> GuardResponse:
        return await serving.guard(req)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        outcome = await serving.chat(req)
        if not req.stream:
            return outcome.response()
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = [f"data: {json.dumps(chunk)}\n\n" for chunk in outcome.chunks(include_usage=include_usage)]
        events.append("data: [DONE]\n\n")
        return StreamingResponse(iter(events), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "omniguard"}
                                           for name in (serving.model_name, serving.judge_model_name)]}

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": serving.model_name, "backend": type(judge.backend).__name__,
                "queue_depth": judge.batcher.queue_depth}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Gate, token=token, max_body_bytes=max_body_bytes, metrics=metrics)  # type: ignore[arg-type]
    return app


def error_response(exc: BaseException, metrics: ServerMetrics | None = None) -> JSONResponse:
    """The one place an exception becomes an HTTP status and an OpenAI-shaped body."""
    err = _as_serving_error(exc)
    if metrics is not None:
        metrics.http_errors.labels(err.type).inc()
    body = ErrorResponse(error=ErrorBody(message=err.message, type=err.type, param=err.param, code=err.code))
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(body.model_dump(), status_code=err.status, headers=headers)


def _as_serving_error(exc: BaseException) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg", "invalid request"))
        return ServingError(400, message, param=loc[0] if loc else None, code="invalid_request")
    if isinstance(exc, StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ServingError(exc.status_code, str(exc.detail), type=kind)
    if isinstance(exc, MediaTooLarge):
        return ServingError(413, str(exc), code=exc.kind)
    if isinstance(exc, (MediaError, ContentError, ConfigError)):
        return ServingError(400, str(exc).splitlines()[0], code=exc.kind)
    if isinstance(exc, JudgeTimeout):
        return ServingError(504, str(exc), type="timeout_error", code=exc.kind)
    if isinstance(exc, ModelLoadError):
        return ServingError(503, str(exc), type="server_error", code=exc.kind)
    if isinstance(exc, BackendError):
        return ServingError(502, str(exc).splitlines()[0], type="server_error", code=exc.kind)
    log.exception("unhandled error", exc_info=exc)
    return ServingError(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")


class _Gate:
    """Pure ASGI middleware in front of every route: auth, the body cap and HTTP metrics.

    Checks happen before the route reads anything, so a refused request never reaches the
    model (nor a JSON parser). The body is read here once, capped, and replayed to the app.
    """

    _ROUTES = frozenset({"/v1/guard", "/v1/chat/completions", "/v1/models", "/healthz", "/metrics"})

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int, metrics: ServerMetrics) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self._ROUTES else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_count(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope)
            body = None
            if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
                body, refusal = await self._read_body(scope, receive)
            if refusal is not None:
                await error_response(refusal, self.metrics)(scope, receive, send_and_count)
                return
            await self.app(scope, _replay(body, receive) if body is not None else receive, send_and_count)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.request_latency.labels(route).observe(time.perf_counter() - started)

    def _refuse(self, scope: _Scope) -> ServingError | None:
        if self.token is None or not scope["path"].startswith("/v1/"):
            return None
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return ServingError(401, "missing or invalid bearer token; send 'Authorization: Bearer <token>'",
                                type="authentication_error", code="invalid_api_key")
        return None

    async def _read_body(self, scope: _Scope, receive: _Receive) -> tuple[bytes | None, ServingError | None]:
        too_big = ServingError(413, f"request body is over the {self.max_body_bytes}-byte limit",
                               code="request_too_large")
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None, too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive: _Receive) -> _Receive:
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _version() -> str:
    from .._version import __version__

    return __version__
