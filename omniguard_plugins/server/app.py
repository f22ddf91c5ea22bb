"""The ASGI app: :func:`create_app` wires the serving objects, the routes and the gate.

Routes are module functions in :mod:`~omniguard_plugins.server.routes` reading ``app.state``;
serving logic lives in the serving classes (:class:`~.serving.GuardServing`,
:class:`~.moderations.ModerationServing`, :class:`~.litellm_api.GuardrailApiServing`, the gateway).
Every error, wherever raised (the gate, validation, serving, the judge), goes through
:func:`error_response` once and leaves as OpenAI's error shape ``{"error": {"message", "type",
"param", "code"}}``: one line, a kind and a reason, never a traceback. Abuse and overload are
refused in :mod:`~omniguard_plugins.server.gate` before a route runs (admission is a reservation
taken when a request arrives, see :mod:`omniguard_plugins.admission`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BackendError,
    ConfigError,
    ContentError,
    JudgeTimeout,
    MediaError,
    MediaTooLarge,
    ModelLoadError,
    OmniGuardError,
    OverloadedError,
    TextTooLarge,
)
from ..judge import OmniGuard
from .gate import DEFAULT_BODY_TIMEOUT_S, Gate
from .gateway import GatewayServing
from .litellm_api import GuardrailApiServing
from .metrics import ServerMetrics
from .moderations import ModerationServing
from .routes import Limits, check_request_size, router
from .serving import DEFAULT_JUDGE_MODEL, GuardServing, ServingError
from .upstream import Upstream

__all__ = ["DEFAULT_MAX_BODY_BYTES", "check_request_size", "create_app", "error_response", "public_model_name"]

log = logging.getLogger("omniguard.server")

#: room for the largest media the default MediaLimits accept, base64-encoded (4/3) in JSON
DEFAULT_MAX_BODY_BYTES = 96 * 1024 * 1024
#: longest error message a client is sent
_MAX_MESSAGE = 300


def create_app(
    judge: OmniGuard | None = None,
    token: str | None = None,
    *,
    tokens: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout_s: float | None = None,
    model_name: str | None = None,
    judge_model_name: str = DEFAULT_JUDGE_MODEL,
    load_on_startup: bool = True,
    max_concurrency_per_client: int = 0,
    max_queue_delay_s: float | None = None,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    upstream: str | None = None,
    upstream_key: str | None = None,
    upstream_timeout_s: float | None = None,
) -> FastAPI:
    """The guard server as an ASGI app; mount it in your own app or serve it with uvicorn.

    ``judge`` defaults to ``OmniGuard.shared()``. With ``token`` (or several ``tokens``, one per
    client) set, every ``/v1/*`` route needs ``Authorization: Bearer <token>`` (``/healthz`` and
    ``/metrics`` stay open, as in vLLM). Each request takes a reservation on the judge when it
    arrives, before its body is read; one that would wait longer than ``max_queue_delay_s`` for
    the model gets 429 with ``Retry-After`` at once (None: the judge's ``max_queue_delay_s``,
    derived from the recent batch time unless configured; 0: off, only the judge's queue bound
    refuses). ``max_concurrency_per_client`` (0: no limit) caps the requests one token (or,
    without tokens, one address) may have in flight. Chat completions for ``judge_model_name``
    judge their messages and answer in Llama Guard's short form; for any other name they are raw
    generations from the checkpoint, or, with ``upstream`` (an OpenAI-compatible base URL such as
    ``http://vllm:8000/v1``, called with ``upstream_key``), guarded completions from that LLM
    (:mod:`~omniguard_plugins.server.gateway`); ``upstream_timeout_s`` (default: the request
    timeout) bounds the input check and the upstream's answer together, then 504.
    """
    judge = judge if judge is not None else OmniGuard.shared()
    serving = GuardServing(judge, request_timeout_s=request_timeout_s, judge_model_name=judge_model_name,
                           model_name=model_name or public_model_name(judge.config.model))
    metrics = ServerMetrics(judge, queue_delay_s=max_queue_delay_s)
    judge.add_listener(metrics.on_verdict)
    gateway = None
    if upstream:  # a stream's mid-way error leaves through the same mapping, as an SSE event
        gateway = GatewayServing(serving, Upstream(upstream, upstream_key), timeout_s=upstream_timeout_s,
                                 error_event=lambda exc: json.loads(bytes(error_response(exc, metrics).body)))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load_on_startup:  # the model loads before the port opens: /healthz answering means ready
            await asyncio.to_thread(lambda: judge.load().batcher)
        yield
        if gateway is not None:
            await gateway.upstream.aclose()

    app = FastAPI(title="OmniGuard", version=_version(), lifespan=lifespan)
    app.state.serving, app.state.metrics, app.state.gateway = serving, metrics, gateway
    app.state.moderations, app.state.guardrail_api = ModerationServing(serving), GuardrailApiServing(serving)
    app.state.limits = Limits(judge.config.max_text_chars, max_queue_delay_s)
    app.include_router(router)

    async def any_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, metrics)

    for known in (Exception, RequestValidationError, StarletteHTTPException, ServingError, OmniGuardError):
        app.add_exception_handler(known, any_error)  # type: ignore[arg-type]
    app.add_middleware(
        Gate, tokens=[t for t in (token, *tokens) if t], max_body_bytes=max_body_bytes,  # type: ignore[arg-type]
        metrics=metrics, admission=judge.admission, queue_delay_s=max_queue_delay_s,
        max_per_client=max_concurrency_per_client, body_timeout_s=body_timeout_s, error_response=error_response,
        routes=lambda: _paths(app.routes),
    )
    return app


def _paths(routes: Sequence[Any]) -> frozenset[str]:
    """Every route's path, through included routers (FastAPI keeps an included router whole)."""
    out: set[str] = set()
    for route in routes:
        if getattr(route, "path", None) is not None:
            out.add(str(route.path))
        inner = getattr(route, "original_router", route)
        out |= _paths(getattr(inner, "routes", None) or ())
    return frozenset(out)


def public_model_name(model: str) -> str:
    """The model id clients see: a local checkpoint's folder name, never its host path."""
    looks_local = model.startswith(("/", "./", "../", "~", "\\")) or (len(model) > 1 and model[1] == ":")
    try:
        looks_local = looks_local or Path(model).expanduser().exists()
    except OSError:
        pass
    if not looks_local:
        return model
    return Path(model.rstrip("/" + os.sep)).name or "omniguard"


def error_response(exc: BaseException, metrics: ServerMetrics | None = None) -> JSONResponse:
    """The one place an exception becomes an HTTP status and an OpenAI-shaped body."""
    err = _as_serving_error(exc)
    if metrics is not None:
        metrics.count_error(err.type)
    message = err.message.splitlines()[0][:_MAX_MESSAGE] if err.message else err.type
    # ErrorResponse's shape, written directly: a burst of refusals is answered with this
    body = {"error": {"message": message, "type": err.type, "param": err.param, "code": err.code}}
    headers: dict[str, str] = dict(getattr(err, "headers", None) or {})
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse(body, status_code=err.status, headers=headers or None)


def _as_serving_error(exc: BaseException) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ServingError(exc.status_code, str(exc.detail), type=kind)
    if isinstance(exc, OverloadedError):
        return ServingError(429, str(exc), type="rate_limit_error", code=exc.kind)
    if isinstance(exc, (MediaTooLarge, TextTooLarge)):
        return ServingError(413, str(exc), code=exc.kind)
    if isinstance(exc, (MediaError, ContentError, ConfigError)):
        return ServingError(400, str(exc), code=exc.kind)
    if isinstance(exc, JudgeTimeout):
        return ServingError(504, str(exc), type="timeout_error", code=exc.kind)
    if isinstance(exc, ModelLoadError):
        return ServingError(503, str(exc), type="server_error", code=exc.kind)
    if isinstance(exc, BackendError):
        return ServingError(502, str(exc), type="server_error", code=exc.kind)
    log.exception("unhandled error", exc_info=exc)
    return ServingError(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")


def _validation_error(exc: RequestValidationError) -> ServingError:
    """Say what is wrong: where the JSON breaks, or which field fails and why."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        pos = next((p for p in reversed(first.get("loc", ())) if isinstance(p, int)), None)
        where = ""
        if pos is not None and isinstance(exc.body, str):
            line = exc.body.count(chr(10), 0, pos) + 1
            where = f" at line {line} column {pos - exc.body.rfind(chr(10), 0, pos)}"
        return ServingError(400, f"the body is not valid JSON: {reason}{where}", code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = ".".join(loc)
    msg = str(first.get("msg", "invalid request"))
    return ServingError(400, f"{where}: {msg}" if where else msg, param=loc[0] if loc else None,
                        code="invalid_request")


def _version() -> str:
    from .._version import __version__

    return __version__
