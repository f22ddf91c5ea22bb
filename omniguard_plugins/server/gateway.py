"""The guarded gateway: an OpenAI-compatible ``/v1/chat/completions`` in front of an upstream LLM.

A request is judged (every modality of its messages) before it is forwarded; a blocked one
never reaches the upstream and gets a 400 with ``code: "content_filter"`` (as Azure OpenAI
answers a filtered prompt). The answer is judged by the output rail, in the context of the
request, before the client sees it: everything it carries (text, ``reasoning_content``, tool
calls, spoken audio with its transcript, images; :mod:`~omniguard_plugins.openai_answers`).

- whole answers: a blocked one comes back with ``finish_reason: "content_filter"``, no
  content, no tool calls, no audio, and the reason in ``message.refusal``;
- ``stream=True``: the chunks pass the core stream rail, so no byte the judge has not passed
  reaches the client: text and reasoning as safe windows cover them, a tool call and the audio
  only whole, after the final check; a block stops the upstream and ends the stream with an
  OpenAI-shaped error event (the ``openai`` client raises ``APIError``), never ``[DONE]``.

The upstream's time is bounded by ``timeout_s`` (default: the server's request timeout,
``--request-timeout``): a whole request answers within it (the input check and the upstream's
answer share one deadline), else 504 in OpenAI's error shape (``code: "upstream_timeout"``)
and the upstream request is cancelled (its connection closed). A stream must open within it
and may go at most that long without a chunk; one that stalls mid-way ends with the same
error as its last event.

The verdicts travel with the answer: an ``omniguard`` field (``{"input": ..., "output": ...}``,
each :func:`~omniguard_plugins.doors.summarize`'s JSON) on the completion, on a stream's
finishing chunk or its error event; and the headers ``X-OmniGuard-Input`` /
``X-OmniGuard-Output`` (``safe``, or ``unsafe; S1,S9``; a stream's headers leave before its
answer exists, so they carry the input's only).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..content import Conversation, Turn
from ..doors import Ask, Stage, summarize
from ..errors import ConfigError, ContentError
from ..openai_answers import AnswerStream, answer_parts, blocked_event, has_content
from ..openai_messages import conversation_from_openai
from ..streaming import StreamRail, StreamSettings, Window, amoderate
from ..verdict import Verdict
from .serving import ServingBase, ServingError
from .upstream import Upstream

__all__ = ["ContentBlocked", "GatewayReply", "GatewayServing", "verdict_header", "verdict_json"]

INPUT_HEADER = "X-OmniGuard-Input"
OUTPUT_HEADER = "X-OmniGuard-Output"


class ContentBlocked(ServingError):
    """The request was judged unsafe: a 400 (``content_filter``) carrying the verdict's header."""

    def __init__(self, verdict: Verdict) -> None:
        summary = summarize(verdict, "input")
        super().__init__(400, summary.blocked_message(), code="content_filter")
        self.verdict = verdict
        self.headers = {INPUT_HEADER: summary.header()}


@dataclass
class GatewayReply:
    """What the route sends: a JSON body, or SSE events, and the verdict headers."""

    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    events: AsyncIterator[str] | None = None


class GatewayServing(ServingBase):
    """Judge, forward, judge, on the judge and settings of ``serving``. ``error_event`` turns an
    exception raised mid-stream into the OpenAI error object the app's one error mapping makes
    of it. ``timeout_s`` bounds the upstream (see the module docstring; default the request
    timeout)."""

    def __init__(self, serving: ServingBase, upstream: Upstream, *,
                 error_event: Callable[[BaseException], dict[str, Any]],
                 stream_settings: StreamSettings | None = None, timeout_s: float | None = None) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError(f"the upstream timeout must be positive seconds, got {timeout_s!r}")
        super().__init__(serving)
        self.upstream = upstream
        self.error_event = error_event
        self.stream_settings = stream_settings or StreamSettings()
        self.timeout_s = float(timeout_s or self.request_timeout_s)

    async def list_models(self) -> dict[str, Any]:
        """The upstream's models (what a client may ask the gateway for), plus the judge model,
        whose chat completions the gateway answers itself."""
        listing = await self.upstream.models(timeout_s=self.timeout_s)
        judge_model = self.judge_model_name
        data = [m for m in listing["data"] if not (isinstance(m, dict) and m.get("id") == judge_model)]
        data.append({"id": judge_model, "object": "model", "owned_by": "omniguard"})
        return {**listing, "object": "list", "data": data}

    async def chat(self, body: dict[str, Any]) -> GatewayReply:
        if body.get("n", 1) != 1:
            raise ServingError(400, "the gateway judges one answer per request; n must be 1", param="n")
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        conversation = conversation_from_openai(body.get("messages") or [])  # ContentError -> 400
        verdict = await self.verdict(Ask(conversation, stage="input"))  # shed: OverloadedError (429)
        if not verdict.safe:
            raise ContentBlocked(verdict)
        headers = {INPUT_HEADER: summarize(verdict, "input").header()}
        audio = body.get("audio")
        audio_format = audio.get("format") if isinstance(audio, dict) else None  # pcm16 is raw PCM
        if body.get("stream"):
            # an upstream error (or a stream that does not open in time) is still a plain HTTP error here
            chunks = await self.upstream.stream(body, timeout_s=_left(deadline), stall_s=self.timeout_s)
            reader = AnswerStream(audio_format=audio_format or "pcm16")
            return GatewayReply(headers, events=self._events(chunks, reader, conversation, verdict))
        completion = await self.upstream.complete(body, timeout_s=_left(deadline))
        if len(completion["choices"]) > 1:  # asked for one: an answer the output verdict does not cover
            raise ServingError(502, f"the upstream LLM answered {len(completion['choices'])} choices for n=1",
                               type="server_error", code="upstream_error")
        message = completion["choices"][0].get("message") if completion["choices"] else None
        output = None  # an empty answer shows nothing: there is nothing to judge (as for an empty stream)
        if _judgeable(message, audio_format):
            turns = conversation.turns

            def answered() -> Conversation:  # built inside the check: a part the judge cannot read meets on_error
                return Conversation((*turns, Turn("assistant", answer_parts(message, audio_format=audio_format))))

            output = await self.verdict(Ask(answered, stage="output"))
            headers[OUTPUT_HEADER] = summarize(output, "output").header()
        completion["omniguard"] = _verdicts(verdict, output)
        if output is not None and not output.safe:
            completion["choices"] = [{"index": 0, "finish_reason": "content_filter", "logprobs": None,
                                      "message": {"role": "assistant", "content": None,
                                                  "refusal": summarize(output, "output").blocked_message()}}]
        return GatewayReply(headers, body=completion)

    async def _events(self, chunks: AsyncIterator[dict[str, Any]], reader: AnswerStream, conversation: Conversation,
                      input_verdict: Verdict) -> AsyncIterator[str]:
        """The upstream's chunks as the rail releases them; the finishing chunks (and usage)
        wait for the final check, so the output verdict can ride on them."""
        rail: StreamRail[dict[str, Any]] = StreamRail(self.stream_settings, read=reader.read)
        turns = conversation.turns

        async def window_judge(window: Window) -> Verdict:
            return await self.judge.acheck(Ask(window.conversation(turns), stage="output"))

        tail: list[dict[str, Any]] = []
        try:
            async for chunk in amoderate(chunks, rail, reader.judge(window_judge)):
                if _finishing(chunk):
                    tail.append(chunk)
                else:
                    yield _event(chunk)
        except Exception as exc:  # noqa: BLE001 - the status line is gone: the error travels as an event
            yield _event(self.error_event(exc))
            return
        output = next((v for v in reversed(rail.verdicts) if v.details.get("stream_check") == "final"), None)
        verdicts = _verdicts(input_verdict, rail.blocked or output)
        if rail.blocked is not None:
            yield _event(blocked_event(rail.blocked, "output", omniguard=verdicts))
            return
        marked = False
        for chunk in tail:
            if not marked and chunk.get("choices"):
                chunk["omniguard"], marked = verdicts, True
            yield _event(chunk)
        yield "data: [DONE]\n\n"


def verdict_json(verdict: Verdict | None, stage: Stage | None = None) -> dict[str, Any] | None:
    """A verdict as the gateway reports it: :func:`~omniguard_plugins.doors.summarize`'s JSON."""
    return None if verdict is None else summarize(verdict, stage).to_json()


def verdict_header(verdict: Verdict) -> str:
    """``safe``, ``unsafe; S1,S9`` or ``error; <kind>``: one header line."""
    return summarize(verdict).header()


def _verdicts(input_verdict: Verdict, output: Verdict | None) -> dict[str, Any]:
    return {"input": verdict_json(input_verdict, "input"), "output": verdict_json(output, "output")}


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())


def _judgeable(message: Any, audio_format: str | None) -> bool:
    """Whether the answer carries anything to judge (a part the judge cannot read counts)."""
    try:
        return has_content(answer_parts(message, audio_format=audio_format))
    except ContentError:
        return True


def _finishing(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices") or []
    return not choices or any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
