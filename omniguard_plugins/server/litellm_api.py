"""LiteLLM's Generic Guardrail API on the judge: a LiteLLM proxy guards its traffic with
``omniguard serve`` and no code of ours in the proxy.

``input_type: "request"`` is an input check of the request: its ``structured_messages`` when
LiteLLM sends them (they carry the images and the conversation), else ``texts`` and ``images``
as one user turn. ``"response"`` is an output check of ``texts`` (and tool-call arguments) as
the assistant's turn, after ``structured_messages`` when present (LiteLLM sends the answer
alone, so the judge then sees it without the question). Nothing to judge (an empty answer)
is ``NONE`` with the label ``empty``. Unsafe is ``BLOCKED`` with the verdict
as the reason; a failed check blocks under ``on_error="block"``, as everywhere. The response's
``omniguard`` field is the verdict summary every door sends.
"""

from __future__ import annotations

from ..content import Conversation, Image, Part, Text, Turn
from ..doors import Ask, Stage, VerdictSummary, summarize
from ..openai_answers import answer_parts
from ..openai_messages import conversation_from_openai
from .litellm_protocol import GuardrailApiRequest, GuardrailApiResponse
from .moderation_protocol import ModerationVerdict
from .serving import ServingBase

__all__ = ["GuardrailApiServing"]


class GuardrailApiServing(ServingBase):
    async def check(self, req: GuardrailApiRequest) -> GuardrailApiResponse:
        conversation, stage = _conversation(req)  # ContentError -> 400
        if not conversation.turns[-1].parts:  # an empty answer, a request of tool results only
            empty = VerdictSummary(label="empty", safe=True, stage=stage)
            return GuardrailApiResponse(action="NONE", omniguard=ModerationVerdict(**empty.to_json()))
        verdict = await self.verdict(Ask(conversation, stage=stage))
        summary = summarize(verdict, stage)
        if verdict.safe:
            return GuardrailApiResponse(action="NONE", omniguard=ModerationVerdict(**summary.to_json()))
        return GuardrailApiResponse(action="BLOCKED", blocked_reason=summary.blocked_message(),
                                    omniguard=ModerationVerdict(**summary.to_json()))


def _conversation(req: GuardrailApiRequest) -> tuple[Conversation, Stage]:
    context = conversation_from_openai(req.structured_messages).turns if req.structured_messages else ()
    loose: list[Part] = [Text(t) for t in req.texts or [] if t]
    if req.input_type == "request":
        if context:
            return Conversation(context), "input"
        loose += [Image(url, origin="url") for url in req.images or []]
        return Conversation((Turn("user", tuple(loose)),)), "input"
    # tool calls rendered as every door renders them (doors.render_tool_call, media in arguments included)
    calls = answer_parts({"tool_calls": req.tool_calls}) if req.tool_calls else ()
    answer = (*loose, *calls, *(Image(url, origin="url") for url in req.images or []))
    return Conversation((*context, Turn("assistant", answer))), "output"
