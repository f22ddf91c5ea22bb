"""The guarded gateway: an OpenAI-compatible ``/v1/chat/completions`` in front of an upstream LLM.

A request is judged (every modality of its messages) before it is forwarded; a blocked one
never reaches the upstream and gets a 400 with ``code: "content_filter"`` (as Azure OpenAI
answers a filtered prompt). The answer is judged by the output rail, in the context of the
request, before the client sees it:

- whole answers: a blocked one comes back with ``finish_reason: "content_filter"``, no
  content, and the reason in ``message.refusal``;
- ``stream=True``: the chunks pass the core stream rail, so no byte the judge has not passed
  reaches the client; a block stops the upstream and ends the stream with an OpenAI-shaped
  error event (the ``openai`` client raises ``APIError``), never ``[DONE]``.

The verdicts travel with the answer: an ``omniguard`` field (``{"input": ..., "output": ...}``,
each ``{label, categories, score, error}``) on the completion, on a stream's finishing chunk or
its error event; and the headers ``X-OmniGuard-Input`` / ``X-OmniGuard-Output`` (``safe``, or
``unsafe; S1,S9``; a stream's headers leave before its answer exists, so they carry the input's
only).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..content import Conversation, Text, Turn
from ..judge import OmniGuard
from ..openai_answers import answer_text, delta_text
from ..openai_messages import conversation_from_openai
from ..streaming import StreamRail, StreamSettings, amoderate, output_judge
from ..verdict import Verdict
from .moderations import raise_if_shed
from .serving import GuardServing, ServingError
from .upstream import Upstream

__all__ = ["ContentBlocked", "GatewayReply", "GatewayServing", "verdict_header", "verdict_json"]

INPUT_HEADER = "X-OmniGuard-Input"
OUTPUT_HEADER = "X-OmniGuard-Output"


class ContentBlocked(ServingError):
    """The request was judged unsafe: a 400 (``content_filter``) carrying the verdict's header."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(400, f"the request was blocked by OmniGuard: {verdict.summary()}", code="content_filter")
        self.verdict = verdict
        self.headers = {INPUT_HEADER: verdict_header(verdict)}


@dataclass
class GatewayReply:
    """What the route sends: a JSON body, or SSE events, and the verdict headers."""

    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    events: AsyncIterator[str] | None = None


class GatewayServing:
    """Judge, forward, judge. ``error_event`` turns an exception raised mid-stream into the
    OpenAI error object the app's one error mapping makes of it."""

    def __init__(self, serving: GuardServing, upstream: Upstream, *, error_event: Callable[[BaseException], dict[str, Any]],
                 stream_settings: StreamSettings | None = None) -> None:
        self.serving = serving
        self.upstream = upstream
        self.error_event = error_event
        self.stream_settings = stream_settings or StreamSettings()

    @property
    def judge(self) -> OmniGuard:
        return self.serving.judge

    async def chat(self, body: dict[str, Any]) -> GatewayReply:
        if body.get("n", 1) != 1:
            raise ServingError(400, "the gateway judges one answer per request; n must be 1", param="n")
        conversation = conversation_from_openai(body.get("messages") or [])  # ContentError -> 400
        verdict = await self._check(conversation, "input")
        if not verdict.safe:
            raise ContentBlocked(verdict)
        headers = {INPUT_HEADER: verdict_header(verdict)}
        if body.get("stream"):
            chunks = await self.upstream.stream(body)  # an upstream error is still a plain HTTP error here
            return GatewayReply(headers, events=self._events(chunks, conversation, verdict))
        completion = await self.upstream.complete(body)
        answer = answer_text(completion["choices"][0].get("message") if completion["choices"] else None)
        output = None  # an empty answer shows nothing: there is nothing to judge (as for an empty stream)
        if answer.strip():
            judged = Conversation((*conversation.turns, Turn("assistant", (Text(answer),))))
            output = await self._check(judged, "output")
            headers[OUTPUT_HEADER] = verdict_header(output)
        completion["omniguard"] = {"input": verdict_json(verdict), "output": verdict_json(output)}
        if output is not None and not output.safe:
            refusal = f"the answer was blocked by OmniGuard: {output.summary()}"
            completion["choices"] = [{"index": 0, "finish_reason": "content_filter", "logprobs": None,
                                      "message": {"role": "assistant", "content": None, "refusal": refusal}}]
        return GatewayReply(headers, body=completion)

    async def _check(self, conversation: Conversation, direction: str) -> Verdict:
        verdict: Verdict = await self.serving._bounded(self.judge.acheck(conversation, direction=direction))
        raise_if_shed(verdict)
        return verdict

    async def _events(self, chunks: AsyncIterator[dict[str, Any]], conversation: Conversation,
                      input_verdict: Verdict) -> AsyncIterator[str]:
        """The upstream's chunks as the rail releases them; the finishing chunks (and usage)
        wait for the final check, so the output verdict can ride on them."""
        rail: StreamRail[dict[str, Any]] = StreamRail(self.stream_settings, read=_read_chunk)
        tail: list[dict[str, Any]] = []
        try:
            async for chunk in amoderate(chunks, rail, output_judge(self.judge, conversation.turns)):
                if _finishing(chunk):
                    tail.append(chunk)
                else:
                    yield _event(chunk)
        except Exception as exc:  # noqa: BLE001 - the status line is gone: the error travels as an event
            yield _event(self.error_event(exc))
            return
        output = next((v for v in reversed(rail.verdicts) if v.details.get("stream_check") == "final"), None)
        verdicts = {"input": verdict_json(input_verdict), "output": verdict_json(rail.blocked or output)}
        if rail.blocked is not None:
            message = f"the answer was blocked by OmniGuard: {rail.blocked.summary()}"
            yield _event({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                    "code": "content_filter"}, "omniguard": verdicts})
            return
        marked = False
        for chunk in tail:
            if not marked and chunk.get("choices"):
                chunk["omniguard"], marked = verdicts, True
            yield _event(chunk)
        yield "data: [DONE]\n\n"


def verdict_json(verdict: Verdict | None) -> dict[str, Any] | None:
    """A verdict as the gateway reports it (the same fields as ``/v1/moderations``' ``omniguard``)."""
    if verdict is None:
        return None
    return {"label": verdict.label, "categories": list(verdict.category_codes), "score": verdict.score,
            "error": verdict.error}


def verdict_header(verdict: Verdict) -> str:
    """``safe``, ``unsafe; S1,S9`` or ``error; <kind>``: one header line."""
    if verdict.label == "error":
        return f"error; {(verdict.error or 'error').split(':', 1)[0]}"
    codes = ",".join(verdict.category_codes)
    return f"{verdict.label}; {codes}" if codes else verdict.label


def _read_chunk(chunk: dict[str, Any]) -> tuple[str, tuple[()]]:
    return delta_text(chunk), ()


def _finishing(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices") or []
    return not choices or any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
