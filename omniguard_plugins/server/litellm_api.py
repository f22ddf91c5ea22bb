"""LiteLLM's Generic Guardrail API on the judge: a LiteLLM proxy guards its traffic with
``omniguard serve`` and no code of ours in the proxy.

``input_type: "request"`` is an input check of the request: its ``structured_messages`` when
LiteLLM sends them (they carry the images and the conversation), else ``texts`` and ``images``
as one user turn. ``"response"`` is an output check of ``texts`` (and tool-call arguments) as
the assistant's turn, after ``structured_messages`` when present (LiteLLM sends the answer
alone, so the judge then sees it without the question). Nothing to judge (an empty answer)
is ``NONE`` with the label ``empty``. Unsafe is ``BLOCKED`` with the verdict
as the reason; a failed check blocks under ``on_error="block"``, as everywhere.
"""

from __future__ import annotations

from ..content import Conversation, Image, Part, Text, Turn
from ..openai_answers import answer_text
from ..openai_messages import conversation_from_openai
from .litellm_protocol import GuardrailApiRequest, GuardrailApiResponse
from .moderation_protocol import ModerationVerdict
from .moderations import raise_if_shed
from .serving import GuardServing

__all__ = ["GuardrailApiServing"]


class GuardrailApiServing:
    def __init__(self, serving: GuardServing) -> None:
        self.serving = serving

    async def check(self, req: GuardrailApiRequest) -> GuardrailApiResponse:
        conversation, direction = _conversation(req)  # ContentError -> 400
        if not conversation.turns[-1].parts:  # an empty answer, a request of tool results only
            return GuardrailApiResponse(action="NONE", omniguard=ModerationVerdict(label="empty", categories=[]))
        verdict = await self.serving._bounded(self.serving.judge.acheck(conversation, direction=direction))
        raise_if_shed(verdict)
        summary = ModerationVerdict(label=verdict.label, categories=list(verdict.category_codes), score=verdict.score,
                                    error=verdict.error)
        if verdict.safe:
            return GuardrailApiResponse(action="NONE", omniguard=summary)
        return GuardrailApiResponse(action="BLOCKED", blocked_reason=f"OmniGuard: {verdict.summary()}",
                                    omniguard=summary)


def _conversation(req: GuardrailApiRequest) -> tuple[Conversation, str]:
    context = conversation_from_openai(req.structured_messages).turns if req.structured_messages else ()
    loose: list[Part] = [Text(t) for t in req.texts or [] if t]
    if req.input_type == "request":
        if context:
            return Conversation(context), "input"
        loose += [Image(url, origin="url") for url in req.images or []]
        return Conversation((Turn("user", tuple(loose)),)), "input"
    calls = answer_text({"tool_calls": req.tool_calls}) if req.tool_calls else ""
    answer = (*loose, *([Text(calls)] if calls else []), *(Image(url, origin="url") for url in req.images or []))
    return Conversation((*context, Turn("assistant", answer))), "output"
