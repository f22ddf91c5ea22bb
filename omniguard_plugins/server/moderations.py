"""``POST /v1/moderations``: OpenAI's moderation API on the judge, audio and video included.

Each input is judged as a user turn twice in one batch (``judge.acheck_many``): in verdict mode
for the label and categories every other door gives, and in score mode for P(unsafe), which
becomes ``category_scores``. The judge has one P(unsafe) per input, not one per category: each
category the verdict names carries it, the others 0.0. A check that failed is flagged under
``on_error="block"`` (the default) with every score 1.0, so clients that threshold scores fail
closed too; its reason is in ``omniguard.error``. An empty string is not judged: not flagged,
label ``empty``. The ``omniguard`` field is the verdict summary every door sends
(:func:`~omniguard_plugins.doors.summarize`), its ``score`` the P(unsafe) above. With
``"localize": true`` in the request the judge is asked where the harm is (``evidence``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..content import Audio, Conversation, Image, Part, Text, Video
from ..doors import Ask, VerdictSummary, summarize
from ..openai_messages import parts_from_openai
from ..policy import Policy
from ..verdict import Verdict
from .moderation_protocol import (
    MAX_INPUTS,
    OPENAI_CATEGORIES,
    OPENAI_CATEGORY_NAMES,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
    ModerationVerdict,
)
from .serving import ServingBase, ServingError

__all__ = ["ModerationServing", "moderation_inputs", "moderation_messages", "moderation_result"]

_MODALITY = {Text: "text", Image: "image", Audio: "audio", Video: "video"}


class ModerationServing(ServingBase):
    """Moderations over the judge (and request deadline) of :class:`~.serving.ServingBase`."""

    async def moderate(self, req: ModerationRequest) -> ModerationResponse:
        inputs = moderation_inputs(req.input)  # ContentError -> 400, before anything is decoded
        judged = [i for i, parts in enumerate(inputs) if _has_content(parts)]
        asks = [Ask(Conversation.of(user=inputs[i]), stage="input", mode=mode, explain=False,
                    localize=req.localize if mode == "verdict" else None)
                for mode in ("verdict", "score") for i in judged]
        verdicts = await self.verdicts(asks)
        n = len(judged)
        policy = self.judge.config.policy
        results = [_empty_result(policy)] * len(inputs)
        for k, i in enumerate(judged):
            results[i] = moderation_result(verdicts[k], verdicts[n + k], _modalities(inputs[i]), policy)
        return ModerationResponse(id=f"modr-{uuid.uuid4().hex[:24]}", model=req.model or self.model_name,
                                  results=results)


def moderation_inputs(value: str | list[Any]) -> list[tuple[Part, ...]]:
    """OpenAI's ``input`` as one parts tuple per result: a string, a list of strings (one result
    each), or a list of content parts (one result for all of them)."""
    if isinstance(value, str):
        return [parts_from_openai(value) or (Text(""),)]
    if not value:
        raise ServingError(400, "input is empty; send a string, a list of strings or a list of content parts",
                           param="input")
    if all(isinstance(v, str) for v in value):
        if len(value) > MAX_INPUTS:
            raise ServingError(413, f"{len(value)} inputs, over the limit of {MAX_INPUTS}; send fewer per request",
                               param="input", code="too_many_inputs")
        return [parts_from_openai(v) or (Text(""),) for v in value]
    if any(isinstance(v, str) for v in value):
        raise ServingError(400, "input mixes strings and content parts; send either a list of strings or a "
                                "list of parts", param="input")
    return [parts_from_openai(value)]


def moderation_messages(value: str | list[Any]) -> list[dict[str, Any]]:
    """``input`` as chat messages, for the server's size caps (counted before anything is read)."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [{"content": v} for v in value]
    return [{"content": value}]


def moderation_result(verdict: Verdict, scored: Verdict, modalities: list[str], policy: Policy) -> ModerationResult:
    """One input's result: OpenAI's categories from the verdict's, every code of ``policy`` too."""
    named = {c.code for c in verdict.categories}
    flagged_openai = {name for c in verdict.categories for name in OPENAI_CATEGORIES.get(c.name, ())}
    if verdict.error:
        p_unsafe = 0.0 if verdict.safe else 1.0  # fail closed (or open, as on_error said) on every score
        each = {name: p_unsafe for name in (*OPENAI_CATEGORY_NAMES, *(c.code for c in policy))}
    else:
        p_unsafe = scored.score if scored.score is not None and not scored.error else (0.0 if verdict.safe else 1.0)
        each = {name: p_unsafe if name in flagged_openai else 0.0 for name in OPENAI_CATEGORY_NAMES}
        each.update({c.code: p_unsafe if c.code in named else 0.0 for c in policy})
    categories = {name: name in flagged_openai for name in OPENAI_CATEGORY_NAMES}
    categories.update({c.code: c.code in named for c in policy})
    return ModerationResult(
        flagged=not verdict.safe, categories=categories, category_scores=each,
        category_applied_input_types={name: list(modalities) for name in categories},
        omniguard=ModerationVerdict(**summarize(verdict.with_(score=None if verdict.error else p_unsafe),
                                                "input").to_json()),
    )


def _has_content(parts: Sequence[Part]) -> bool:
    return any(not isinstance(p, Text) or p.text.strip() for p in parts)


def _empty_result(policy: Policy) -> ModerationResult:
    """An empty string holds nothing that could be unsafe: not flagged, label ``empty``, not judged."""
    empty = VerdictSummary(label="empty", safe=True, stage="input")
    return moderation_result(Verdict(safe=True), Verdict(safe=True, score=0.0), ["text"], policy).model_copy(
        update={"omniguard": ModerationVerdict(**empty.to_json())})


def _modalities(parts: Sequence[Part]) -> list[str]:
    return list(dict.fromkeys(_MODALITY.get(type(p), "text") for p in parts)) or ["text"]
