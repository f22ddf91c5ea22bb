"""Wire models of LiteLLM's Generic Guardrail API (``guardrail: generic_guardrail_api``).

LiteLLM posts ``{input_type, texts, images, structured_messages, tool_calls, model, ...}`` to
``{api_base}/beta/litellm_basic_guardrail_api`` and reads ``{action, blocked_reason}`` back
(``litellm/types/proxy/guardrails/guardrail_hooks/generic_guardrail_api.py``, litellm 1.110).
Unknown fields are accepted (and logged) like every other request model here.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

from .moderation_protocol import ModerationVerdict
from .protocol import MAX_MESSAGES, MAX_PARTS, _Request

__all__ = ["GUARDRAIL_API_PATH", "GuardrailApiRequest", "GuardrailApiResponse"]

#: served under /v1 so the server's token guards it: LiteLLM's ``api_base`` is ``http://guard:8000/v1``
GUARDRAIL_API_PATH = "/v1/beta/litellm_basic_guardrail_api"


class GuardrailApiRequest(_Request):
    input_type: Literal["request", "response"]
    texts: Optional[list[str]] = Field(default=None, max_length=MAX_PARTS)
    #: image URLs or data: URIs LiteLLM took from the messages
    images: Optional[list[str]] = Field(default=None, max_length=MAX_PARTS)
    #: the request's chat messages (OpenAI shape), when LiteLLM sends them
    structured_messages: Optional[list[Any]] = Field(default=None, max_length=MAX_MESSAGES)
    tool_calls: Optional[list[Any]] = None
    model: Optional[str] = None


class GuardrailApiResponse(BaseModel):
    action: Literal["NONE", "BLOCKED"]
    blocked_reason: Optional[str] = None
    #: the verdict as the judge gave it (LiteLLM ignores it; logs and tests read it)
    omniguard: ModerationVerdict
