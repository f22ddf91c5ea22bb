"""Wire models of the server: what clients send and what they get back.

Request models accept unknown fields (OpenAI clients send many we do not use) and log them
once per request, so a misspelt option is visible in the server log instead of silently lost.
Content parts stay plain dicts here: :mod:`omniguard_plugins.openai_messages` turns them into
parts and owns every rule about what a part may look like.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ChatChoice",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ErrorBody",
    "ErrorResponse",
    "GuardRequest",
    "GuardResponse",
    "LabelLogprobs",
    "VerdictOut",
    "MAX_MESSAGES",
    "MAX_PARTS",
]

log = logging.getLogger("omniguard.server")

#: request caps: a conversation to judge is a few turns, and each turn a few parts. Far more is
#: abuse (or a bug), refused as a 400/413 before any part is converted or decoded
MAX_MESSAGES = 256
MAX_PARTS = 256
_Parts = Annotated[list[Any], Field(max_length=MAX_PARTS)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> _Request:
        if self.model_extra:
            # names only (never values: they may be media or secrets), a few and short
            names = [str(name)[:40] for name in sorted(self.model_extra)[:10]]
            log.info("%s: ignoring unknown fields %s", type(self).__name__, names)
        return self


class ChatMessage(_Request):
    role: str
    #: a string or a list of OpenAI content parts (text, image_url, input_audio, audio_url, video_url)
    content: Union[str, _Parts, None] = None
    name: Optional[str] = None


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    """The subset of OpenAI chat completions a guard checkpoint needs (as vLLM offers it)."""

    model: Optional[str] = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    #: decoding is greedy (the checkpoint's own generation config); only 0 or absent is accepted
    temperature: Optional[float] = Field(default=None, ge=0.0)
    top_p: Optional[float] = None
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    seed: Optional[int] = None
    user: Optional[str] = None
    #: vLLM extras: continue the trailing assistant message instead of starting a new one
    continue_final_message: bool = False
    add_generation_prompt: bool = True

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    @property
    def token_cap(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: Optional[list[int]] = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class LabelLogprobs(BaseModel):
    """Logprobs of the label token only: the one distribution the judge computes (score mode)."""

    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: Optional[LabelLogprobs] = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    #: counted by the in-process model; omitted when the backend does not count (never guessed)
    usage: Optional[Usage] = None


class GuardRequest(_Request):
    """``POST /v1/guard``: a conversation in OpenAI-style messages and what to check."""

    messages: list[Any] = Field(min_length=1, max_length=MAX_MESSAGES)
    direction: Optional[Literal["input", "output"]] = None
    mode: Optional[Literal["verdict", "critique", "score"]] = None
    #: a list of categories ({"name", "description"} or names), or a mapping as
    #: ``Policy.from_dict`` takes (``categories`` or ``drop``/``rename``/``add``); never a path
    policy: Union[list[Any], dict[str, Any], None] = None
    explain_unsafe: Optional[bool] = None
    #: ask where the harm is (the verdict's ``evidence``: part, characters, seconds)
    localize: Optional[bool] = None


class _Summary(BaseModel):
    """The fields of :meth:`omniguard_plugins.doors.VerdictSummary.to_json`, one spelling for
    every door that sends a verdict."""

    label: str
    safe: bool
    category_names: list[str] = Field(default_factory=list)
    score: Optional[float] = None
    error: Optional[str] = None
    critique: Optional[str] = None
    stage: Optional[str] = None
    direction: str = "input"
    mode: str = "verdict"
    latency_ms: float = 0.0
    cached: bool = False
    #: where the harm is, as ``Evidence.to_json`` writes it (empty unless asked with ``localize``)
    evidence: list[dict[str, Any]] = Field(default_factory=list)


class VerdictOut(_Summary):
    """A verdict summary as JSON: ``/v1/guard``'s answer, the ``omniguard`` field of moderations
    and of the LiteLLM guardrail API (``categories`` are the codes, ``category_names`` their names)."""

    categories: list[str] = Field(default_factory=list)


class GuardResponse(VerdictOut):
    """``/v1/guard``: the verdict summary, and the verdict's ``details``."""

    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorBody
