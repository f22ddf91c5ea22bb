"""The routes: module-level functions that read the serving objects from ``app.state``.

A route checks what needs the parsed request (text characters and parts, counted before
anything is converted or decoded), calls one serving method and sends what it returns: a
response model, or an SSE generator as a stream. Routes decide nothing else (load shedding is
the gate's and the serving's, errors are mapped once in :mod:`~omniguard_plugins.server.app`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..config import checkpoint_revision, is_tiny_checkpoint
from ..prompt import check_text_size
from .litellm_protocol import GUARDRAIL_API_PATH, GuardrailApiRequest, GuardrailApiResponse
from .metrics import CONTENT_TYPE_LATEST
from .moderation_protocol import ModerationRequest, ModerationResponse
from .moderations import moderation_messages
from .protocol import MAX_PARTS, ChatCompletionRequest, ChatCompletionResponse, GuardRequest, GuardResponse
from .serving import ServingError

__all__ = ["Limits", "check_request_size", "router"]

router = APIRouter()


@dataclass(frozen=True)
class Limits:
    """The caps a route applies, and the queue-delay bound the gate admits HTTP requests under
    (None: the judge's own, derived unless configured)."""

    max_text_chars: int
    queue_delay_s: float | None = None


@router.post("/v1/guard", response_model=GuardResponse)
async def guard(req: GuardRequest, request: Request) -> GuardResponse:
    state = request.app.state
    check_request_size(req.messages, state.limits.max_text_chars)
    return await state.serving.guard(req)  # type: ignore[no-any-return]


@router.post("/v1/moderations", response_model=ModerationResponse)
async def moderate(req: ModerationRequest, request: Request) -> ModerationResponse:
    state = request.app.state
    check_request_size(moderation_messages(req.input), state.limits.max_text_chars)
    return await state.moderations.moderate(req)  # type: ignore[no-any-return]


@router.post(GUARDRAIL_API_PATH, response_model=GuardrailApiResponse)
async def litellm_guardrail(req: GuardrailApiRequest, request: Request) -> GuardrailApiResponse:
    state = request.app.state
    check_request_size([{"content": t} for t in req.texts or []] + list(req.structured_messages or []),
                       state.limits.max_text_chars)
    return await state.guardrail_api.check(req)  # type: ignore[no-any-return]


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
    """The judge model (and, without an upstream, raw generation) from :class:`GuardServing`;
    with an upstream, every other model through the guarded gateway."""
    state = request.app.state
    check_request_size(req.messages, state.limits.max_text_chars)
    if state.gateway is not None and req.model != state.serving.judge_model_name:
        reply = await state.gateway.chat(req.model_dump(exclude_unset=True))
        if reply.events is not None:
            return StreamingResponse(reply.events, media_type="text/event-stream", headers=reply.headers)
        return JSONResponse(reply.body, headers=reply.headers)
    outcome = await state.serving.chat(req)
    if not req.stream:
        return outcome.response()
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return StreamingResponse(outcome.events(include_usage=include_usage), media_type="text/event-stream")


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The gateway's upstream models (and the judge model) when there is one; else the served
    checkpoint and the judge model."""
    state = request.app.state
    listing = getattr(state.gateway, "list_models", None)
    if listing is not None:
        return await listing()  # type: ignore[no-any-return]
    serving = state.serving
    model = str(serving.judge.config.model)
    # the checkpoint as served: a revision (a hash, never a path) and the tiny test checkpoint named
    # as such, so a report made through this server names what really answered
    facts = {"revision": checkpoint_revision(model), "tiny": is_tiny_checkpoint(model)}
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "omniguard", **facts}
                                       for name in (serving.model_name, serving.judge_model_name)]}


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 ``ready``; 503 ``overloaded`` (queue full: route traffic elsewhere for a moment) or
    ``broken`` (worker gone, backend stuck or failing). ``admission``: the reservations held and
    the estimate they are counted with. Open, so it names no paths."""
    state = request.app.state
    judge = state.serving.judge
    health = judge.batcher.health()
    body: dict[str, Any] = {"status": health.state, "queue_depth": health.queue_depth}
    if health.reason:
        body["reason"] = health.reason
    body["admission"] = judge.admission.state(state.limits.queue_delay_s).to_json()
    headers = {"Retry-After": str(math.ceil(health.retry_after_s))} if health.state == "overloaded" else None
    return JSONResponse(body, status_code=200 if health.state == "ready" else 503, headers=headers)


@router.get("/metrics")
def prometheus(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


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
