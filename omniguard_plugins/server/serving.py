"""Serving logic, apart from routes: guard checks and raw chat completions on one judge.

:class:`ServingBase` is what every serving class shares (as vLLM's ``OpenAIServing``): the judge,
the request deadline (:meth:`~ServingBase.bounded`) and a check that raises
:class:`~omniguard_plugins.errors.OverloadedError` when the judge sheds it (:meth:`~ServingBase.verdict`),
so a shed request is answered 429, never sent as a verdict. :class:`GuardServing` (``/v1/guard``
and chat completions), ``ModerationServing``, ``GuardrailApiServing`` and the gateway subclass it.
A serving method returns a response model, or an SSE generator for a stream; routes only send it.

Every path ends in the judge's one micro-batcher, so concurrent HTTP clients share batches with
each other and with anything else in the process using the same judge. Errors are raised as
:class:`ServingError` (or an ``OmniGuardError``) and mapped to OpenAI's error shape once, in
:mod:`omniguard_plugins.server.app`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..answer_format import short_form, stops_at_verdict
from ..content import MediaPart, Text
from ..doors import Ask, Stage, summarize
from ..judge import CheckInput, OmniGuard
from ..openai_messages import conversation_from_openai, parts_from_openai
from ..policy import Policy
from ..verdict import Verdict
from .protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    GuardRequest,
    GuardResponse,
    LabelLogprobs,
    TokenLogprob,
    TopLogprob,
    Usage,
)

__all__ = ["DEFAULT_JUDGE_MODEL", "ChatOutcome", "GuardServing", "ServingBase", "ServingError", "guard_response",
           "short_form"]

T = TypeVar("T")

#: chat completions for this model name judge their messages and answer in Llama Guard's short form
DEFAULT_JUDGE_MODEL = "omniguard-judge"


class ServingError(Exception):
    """An error with an HTTP status and OpenAI's error fields; mapped once in app.py."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ChatOutcome:
    """One finished completion, before it is shaped as a response or a stream."""

    id: str
    created: int
    model: str
    text: str
    finish_reason: str
    logprobs: LabelLogprobs | None
    #: None when the backend does not count prompt tokens (a remote one): omitted, not guessed
    usage: Usage | None = None

    def response(self) -> ChatCompletionResponse:
        choice = ChatChoice(message=AssistantMessage(content=self.text), finish_reason=self.finish_reason,  # type: ignore[arg-type]
                            logprobs=self.logprobs)
        return ChatCompletionResponse(id=self.id, created=self.created, model=self.model, choices=[choice],
                                      usage=self.usage)

    def chunks(self, *, include_usage: bool = False) -> list[dict[str, Any]]:
        """The same answer as ``chat.completion.chunk`` events (one content chunk: the
        batcher returns whole answers, so finer chunks would only pretend to stream); with
        ``include_usage``, OpenAI's last chunk with no choices and the usage."""
        head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        lp = self.logprobs.model_dump() if self.logprobs else None
        chunks = [
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
            {**head, "choices": [{"index": 0, "delta": {"content": self.text}, "logprobs": lp, "finish_reason": None}]},
            {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": self.finish_reason}]},
        ]
        if include_usage:
            chunks.append({**head, "choices": [], "usage": self.usage.model_dump() if self.usage else None})
        return chunks

    async def events(self, *, include_usage: bool = False) -> AsyncIterator[str]:
        """:meth:`chunks` as server-sent events, ending with ``[DONE]``."""
        for chunk in self.chunks(include_usage=include_usage):
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"


class ServingBase:
    """The judge behind HTTP, with what every endpoint shares. ``request_timeout_s`` bounds every
    request end to end (default: the judge's ``timeout_s``). ``source`` is the judge, or another
    serving object whose judge and settings this one shares."""

    def __init__(self, source: OmniGuard | ServingBase, *, request_timeout_s: float | None = None,
                 model_name: str | None = None, judge_model_name: str | None = None) -> None:
        if isinstance(source, ServingBase):
            self.judge: OmniGuard = source.judge
            request_timeout_s = request_timeout_s or source.request_timeout_s
            model_name = model_name or source.model_name
            judge_model_name = judge_model_name or source.judge_model_name
        else:
            self.judge = source
        self.request_timeout_s: float = request_timeout_s or self.judge.config.timeout_s
        self.model_name: str = model_name or self.judge.config.model
        #: the model name whose chat completions are judgements (see :meth:`GuardServing.judge_chat`)
        self.judge_model_name: str = judge_model_name or DEFAULT_JUDGE_MODEL

    async def bounded(self, awaitable: Awaitable[T]) -> T:
        """``awaitable`` within the request deadline, else 504."""
        try:
            return await asyncio.wait_for(awaitable, self.request_timeout_s)
        except asyncio.TimeoutError:
            raise ServingError(504, f"no answer within {self.request_timeout_s:g}s; the model is overloaded",
                               type="timeout_error", code="timeout") from None

    async def verdict(self, ask: Ask) -> Verdict:
        """One check within the deadline. A check the judge sheds raises OverloadedError (429
        with Retry-After): a client should retry it, not read a verdict."""
        return await self.bounded(self.judge.acheck(ask, shed="raise"))

    async def verdicts(self, items: Sequence[CheckInput]) -> list[Verdict]:
        """Many checks in shared batches, within one deadline; shed as :meth:`verdict`."""
        return await self.bounded(self.judge.acheck_many(items, shed="raise")) if items else []


class GuardServing(ServingBase):
    """``/v1/guard`` and ``/v1/chat/completions`` (raw generation, or judgements for
    ``judge_model_name``)."""

    # ------------------------------------------------------------------ /v1/guard

    async def guard(self, req: GuardRequest) -> GuardResponse:
        conversation = conversation_from_openai(req.messages)  # ContentError -> 400
        # the judge decodes each media part once, off the event loop
        verdict = await self.verdict(Ask(conversation, direction=req.direction, mode=req.mode,
                                       policy=_policy(req.policy), explain=req.explain_unsafe, localize=req.localize))
        return guard_response(verdict)

    # ------------------------------------------------------------------ /v1/chat/completions

    async def chat(self, req: ChatCompletionRequest) -> ChatOutcome:
        """Raw generation: the user text is the prompt, media follow (``judge.agenerate``)."""
        if req.model == self.judge_model_name:
            return await self.judge_chat(req)
        _check_sampling(req)
        text, media_parts, prefix = _split_messages(req)
        stops = req.stop_list
        if req.logprobs:
            mode = "score"
        elif stops_at_verdict(stops):
            mode = "verdict"
        else:
            mode = "critique"
        result = await self.bounded(self.judge.agenerate(text, media_parts, prefix=prefix, mode=mode,  # type: ignore[arg-type]
                                                         max_new_tokens=req.token_cap))
        completion = result.text[len(prefix):] if prefix and result.text.startswith(prefix) else result.text
        completion, stopped = _cut_at_stop(completion, stops)
        capped = req.token_cap is not None and result.new_tokens >= req.token_cap
        finish = "length" if capped and not stopped else "stop"
        logprobs = _label_logprobs(completion, result.score) if req.logprobs else None
        usage = None
        if result.prompt_tokens is not None:
            usage = Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.new_tokens,
                          total_tokens=result.prompt_tokens + result.new_tokens)
        return ChatOutcome(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), req.model or self.model_name,
                           completion, finish, logprobs, usage)

    async def judge_chat(self, req: ChatCompletionRequest) -> ChatOutcome:
        """The messages are the conversation to judge, as in ``/v1/guard`` (system messages are
        skipped; a trailing assistant message makes it an output check); the answer is the
        verdict in Llama Guard's short form. This is how rails that only speak to an ordinary
        chat model and parse Llama Guard (NeMo's content-safety rail, IORails) use the judge.
        Sampling settings are accepted and ignored: a verdict is never sampled (NeMo sends
        a small temperature)."""
        if req.n != 1:
            raise ServingError(400, "n must be 1 (a verdict has one answer)", param="n")
        # ContentError -> 400
        conversation = conversation_from_openai([m.model_dump(exclude_none=True) for m in req.messages])
        verdict = await self.verdict(Ask(conversation, mode="verdict"))
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        return ChatOutcome(request_id, int(time.time()), self.judge_model_name, short_form(verdict), "stop", None)


def guard_response(verdict: Verdict, stage: Stage | None = None) -> GuardResponse:
    """:func:`~omniguard_plugins.doors.summarize`'s JSON, and the verdict's ``details``."""
    summary = summarize(verdict, stage or ("output" if verdict.direction == "output" else "input"))
    return GuardResponse(**summary.to_json(), details=dict(verdict.details or {}))


def _policy(value: Any) -> Policy | None:
    """A policy from JSON only: never a path or YAML text, so a client cannot make the server
    read its files."""
    if value is None:
        return None
    if isinstance(value, list):
        value = {"categories": value}
    if not isinstance(value, dict):
        raise ServingError(400, "policy must be a list of categories or an object with 'categories' or "
                                "drop/rename/add", param="policy")
    return Policy.from_dict(value)  # ConfigError -> 400


def _check_sampling(req: ChatCompletionRequest) -> None:
    if req.temperature not in (None, 0, 0.0):
        raise ServingError(400, "only greedy decoding is served (temperature 0 or absent): the guard's label "
                                "must not depend on chance", param="temperature")
    if req.n != 1:
        raise ServingError(400, "n must be 1 (decoding is greedy, every choice would be the same)", param="n")
    if req.continue_final_message and req.add_generation_prompt:
        raise ServingError(400, "continue_final_message needs add_generation_prompt=false",
                           param="add_generation_prompt")


def _split_messages(req: ChatCompletionRequest) -> tuple[str, tuple[MediaPart, ...], str]:
    """(user text, media parts, forced prefix). The checkpoint was trained on one user turn
    with no system message, so that is the one shape accepted; anything else is a clear 400."""
    messages = list(req.messages)
    prefix = ""
    if req.continue_final_message:
        last = messages.pop()
        if last.role != "assistant":
            raise ServingError(400, "continue_final_message needs a trailing assistant message", param="messages")
        prefix = "".join(p.text for p in parts_from_openai(last.content) if isinstance(p, Text))
    if len(messages) != 1 or messages[0].role != "user":
        roles = ", ".join(m.role for m in req.messages)
        raise ServingError(400, f"expected one user message (plus a trailing assistant message with "
                                f"continue_final_message); got roles [{roles}]", param="messages")
    parts = parts_from_openai(messages[0].content)  # ContentError -> 400
    text = "\n\n".join(p.text for p in parts if isinstance(p, Text))
    media = tuple(p for p in parts if not isinstance(p, Text))
    if not text.strip() and not media:
        raise ServingError(400, "the user message is empty", param="messages")
    return text, media, prefix  # type: ignore[return-value]


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _label_logprobs(completion: str, score: float | None) -> LabelLogprobs | None:
    """The label token's distribution from the backend's P(unsafe); None when it has none."""
    if score is None:
        return None
    stripped = completion.lstrip()
    starts = stripped.lower().startswith(("unsafe", "safe"))
    lead = completion[: len(completion) - len(stripped)] if starts else " "
    chosen = "unsafe" if score >= 0.5 else "safe"  # greedy decoding picks the likelier label

    def lp(p: float) -> float:
        return math.log(p) if p > 0 else -9999.0

    tops = [TopLogprob(token=lead + "unsafe", logprob=lp(score)),
            TopLogprob(token=lead + "safe", logprob=lp(1.0 - score))]
    tops.sort(key=lambda t: -t.logprob)
    mine = next(t for t in tops if t.token.strip() == chosen)
    return LabelLogprobs(content=[TokenLogprob(token=mine.token, logprob=mine.logprob, top_logprobs=tops)])
