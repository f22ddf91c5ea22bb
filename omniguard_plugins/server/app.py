"""The ASGI app: thin routes over :class:`~omniguard_plugins.server.serving.GuardServing`.

Every error, wherever raised (the gate, validation, serving, the judge), goes through
:func:`error_response` once and leaves as OpenAI's error shape ``{"error": {"message", "type",
"param", "code"}}``: one line, a kind and a reason, never a traceback. Abuse is refused in
:mod:`~omniguard_plugins.server.gate` before a route runs; the routes add the caps that need
the parsed request (text characters and parts), checked before anything is decoded or rendered.
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
from fastapi.responses import JSONResponse, Response, StreamingResponse
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
from ..prompt import check_text_size
from .gate import DEFAULT_BODY_TIMEOUT_S, Gate
from .gateway import GatewayServing
from .litellm_api import GuardrailApiServing
from .litellm_protocol import GUARDRAIL_API_PATH, GuardrailApiRequest, GuardrailApiResponse
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .moderation_protocol import ModerationRequest, ModerationResponse
from .moderations import ModerationServing, moderation_messages
from .protocol import (
    MAX_PARTS,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorBody,
    ErrorResponse,
    GuardRequest,
    GuardResponse,
)
from .serving import DEFAULT_JUDGE_MODEL, GuardServing, ServingError
from .upstream import Upstream

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "error_response", "public_model_name"]

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
    max_queue_delay_s: float = 0.0,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    upstream: str | None = None,
    upstream_key: str | None = None,
) -> FastAPI:
    """The guard server as an ASGI app; mount it in your own app or serve it with uvicorn.

    ``judge`` defaults to ``OmniGuard.shared()``. With ``token`` (or several ``tokens``, one per
    client) set, every ``/v1/*`` route needs ``Authorization: Bearer <token>`` (``/healthz`` and
    ``/metrics`` stay open, as in vLLM). ``max_concurrency_per_client`` (0: no limit) caps the
    requests one token (or, without tokens, one address) may have in flight; beyond it, and
    whenever the judge's queue is full, requests get 429 with ``Retry-After``; with
    ``max_queue_delay_s`` also when a new request would wait longer than that for the model
    (so admitted requests keep their latency under overload). Chat completions
    for ``judge_model_name`` judge their messages and answer in Llama Guard's short form; for
    any other name they are raw generations from the checkpoint, or, with ``upstream`` (an
    OpenAI-compatible base URL such as ``http://vllm:8000/v1``, called with ``upstream_key``),
    guarded completions from that LLM (:mod:`~omniguard_plugins.server.gateway`).
    """
    judge = judge if judge is not None else OmniGuard.shared()
    serving = GuardServing(judge, request_timeout_s=request_timeout_s,
                           model_name=model_name or public_model_name(judge.config.model),
                           judge_model_name=judge_model_name)
    metrics = ServerMetrics(judge)
    judge.add_listener(metrics.on_verdict)
    max_text_chars = judge.config.max_text_chars
    moderations = ModerationServing(serving)
    guardrail_api = GuardrailApiServing(serving)
    gateway: GatewayServing | None = None
    if upstream:  # a stream's mid-way error leaves through the same mapping, as an SSE event
        gateway = GatewayServing(serving, Upstream(upstream, upstream_key),
                                 error_event=lambda exc: json.loads(bytes(error_response(exc, metrics).body)))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load_on_startup:
            # load the model before the port opens, so /healthz answering means ready
            await asyncio.to_thread(lambda: judge.load().batcher)
        yield
        if gateway is not None:
            await gateway.upstream.aclose()

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
        check_request_size(req.messages, max_text_chars)
        response = await serving.guard(req)
        if (response.details or {}).get("error_kind") == OverloadedError.kind:
            # shed, not judged: the client should retry, not read a verdict
            raise OverloadedError(response.error or "the judge is overloaded; retry later")
        return response

    @app.post("/v1/moderations", response_model=ModerationResponse)
    async def moderate(req: ModerationRequest) -> ModerationResponse:
        check_request_size(moderation_messages(req.input), max_text_chars)
        return await moderations.moderate(req)

    @app.post(GUARDRAIL_API_PATH, response_model=GuardrailApiResponse)
    async def litellm_guardrail(req: GuardrailApiRequest) -> GuardrailApiResponse:
        check_request_size([{"content": t} for t in req.texts or []] + list(req.structured_messages or []),
                           max_text_chars)
        return await guardrail_api.check(req)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        check_request_size(req.messages, max_text_chars)
        if gateway is not None and req.model != serving.judge_model_name:
            reply = await gateway.chat(await request.json())
            if reply.events is not None:
                return StreamingResponse(reply.events, media_type="text/event-stream", headers=reply.headers)
            return JSONResponse(reply.body, headers=reply.headers)
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
    async def healthz() -> JSONResponse:
        """200 ``ready``; 503 ``overloaded`` (queue full: route traffic elsewhere for a moment)
        or ``broken`` (worker gone, backend stuck or failing). Open, so it names no paths."""
        health = judge.batcher.health()
        body: dict[str, Any] = {"status": health.state, "queue_depth": health.queue_depth}
        if health.reason:
            body["reason"] = health.reason
        headers = {"Retry-After": str(math.ceil(health.retry_after_s))} if health.state == "overloaded" else None
        return JSONResponse(body, status_code=200 if health.state == "ready" else 503, headers=headers)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def admission() -> OverloadedError | None:
        health = judge.batcher.health()
        if health.state == "overloaded":
            return OverloadedError(f"the judge is overloaded ({health.reason}); retry later",
                                   retry_after_s=health.retry_after_s)
        if max_queue_delay_s and health.expected_wait_s > max_queue_delay_s:
            return OverloadedError(f"the judge is overloaded (a new request would wait ~{health.expected_wait_s:.2f} s "
                                   f"for the model, the limit is {max_queue_delay_s:g} s); retry later",
                                   retry_after_s=health.retry_after_s)
        return None

    app.add_middleware(
        Gate, tokens=[t for t in (token, *tokens) if t], max_body_bytes=max_body_bytes,  # type: ignore[arg-type]
        metrics=metrics, admission=admission, max_per_client=max_concurrency_per_client,
        body_timeout_s=body_timeout_s, error_response=error_response,
        routes=lambda: frozenset(str(getattr(r, "path", "")) for r in app.routes),
    )
    return app


def check_request_size(messages: Sequence[Any], max_text_chars: int) -> None:
    """Count text characters and content parts in OpenAI-style messages before anything is
    converted or decoded: an over-long request is refused in microseconds (413)."""
    chars = parts = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            parts += len(content)
            chars += sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if parts > MAX_PARTS:
        raise ServingError(413, f"{parts} content parts, over the limit of {MAX_PARTS}; send fewer per request",
                           param="messages", code="too_many_parts")
    check_text_size(chars, max_text_chars)


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
        metrics.http_errors.labels(err.type).inc()
    message = err.message.splitlines()[0][:_MAX_MESSAGE] if err.message else err.type
    body = ErrorResponse(error=ErrorBody(message=message, type=err.type, param=err.param, code=err.code))
    headers: dict[str, str] = dict(getattr(err, "headers", None) or {})
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse(body.model_dump(), status_code=err.status, headers=headers or None)


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
