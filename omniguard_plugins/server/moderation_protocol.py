"""Wire models of ``POST /v1/moderations`` (OpenAI's schema) and the category mapping.

The request is OpenAI's: ``input`` is a string, a list of strings (one result each), or a list
of content parts (one result for them all: ``text``, ``image_url``, and beyond OpenAI
``input_audio``, ``audio_url`` and ``video_url``). Each result has OpenAI's thirteen categories,
mapped from the S-codes the checkpoint answers with (:data:`OPENAI_CATEGORIES`), plus the
S-codes themselves, and an ``omniguard`` field with the verdict as the judge gave it.
``docs/moderations.md`` shows the same table; a test holds the two equal.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, Field

from .protocol import MAX_PARTS, VerdictOut, _Request

__all__ = [
    "OPENAI_CATEGORIES",
    "OPENAI_CATEGORY_NAMES",
    "MAX_INPUTS",
    "ModerationRequest",
    "ModerationResponse",
    "ModerationResult",
    "ModerationVerdict",
]

#: a request's inputs are judged in one batch; more than this is abuse (or a bug)
MAX_INPUTS = 64

#: OpenAI's moderation categories, in the order its API lists them
OPENAI_CATEGORY_NAMES: tuple[str, ...] = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)

#: a default-policy category name (S1-S12, Llama Guard 3's taxonomy) -> the OpenAI categories
#: it flags. Keyed by name, so a custom policy that keeps a default category keeps its mapping;
#: a category not listed here (S6, S7, S8, custom ones) is reported by its S-code only.
OPENAI_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Violent Crimes": ("violence", "illicit/violent"),
    "Non-Violent Crimes": ("illicit",),
    "Sex-Related Crimes": ("sexual", "illicit/violent"),
    "Child Sexual Exploitation": ("sexual/minors", "sexual"),
    "Defamation": ("harassment",),
    "Specialized Advice": (),
    "Privacy": (),
    "Intellectual Property": (),
    "Indiscriminate Weapons": ("illicit/violent", "violence"),
    "Hate": ("hate", "harassment"),
    "Suicide & Self-Harm": ("self-harm",),
    "Sexual Content": ("sexual",),
}


class ModerationRequest(_Request):
    """OpenAI's moderation request; ``model`` is echoed back, never used to pick a model."""

    model: Optional[str] = None
    input: Union[str, list[Any]] = Field(max_length=max(MAX_INPUTS, MAX_PARTS))
    #: an OmniGuard extra: ask where the harm is (each result's ``omniguard.evidence``)
    localize: Optional[bool] = None


#: the judge's own verdict for one input, as every door sends it (an OmniGuard extra; OpenAI
#: clients ignore it): the verdict summary, its ``score`` P(unsafe) from the score-mode check
ModerationVerdict = VerdictOut


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    omniguard: ModerationVerdict


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]
