"""The OmniGuard rail actions for NeMo Guardrails (``LLMRails``, Colang 1 and 2).

NeMo fills action parameters by name: ``context`` (the conversation variables, where
``user_message`` is a str or, for multimodal messages, the OpenAI parts list exactly as the
app sent it) and any parameter registered with ``rails.register_action_param`` (our judge, as
``omniguard_judge``). The decision is returned as a ``RailOutcome``; the flows act on it.

Unlike NeMo's library rails, a rail that cannot judge does not wave content through: a judge
error, unreadable content or a bug here blocks unless the judge says ``on_error="allow"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from nemoguardrails.actions import action
from nemoguardrails.actions.rail_outcome import RailOutcome

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.openai_messages import parts_from_openai

from .names import INPUT_ACTION, JUDGE_PARAM, OUTPUT_ACTION

__all__ = ["omniguard_check_input", "omniguard_check_output", "outcome_from_verdict"]

log = logging.getLogger("omniguard.nemo")


@action(name=INPUT_ACTION, is_system_action=True)
async def omniguard_check_input(
    context: Mapping[str, Any] | None = None,
    omniguard_judge: OmniGuard | None = None,
    explain_unsafe: bool = True,
) -> RailOutcome:
    """Judge the user's message (text and media). Blocks unsafe input before the main LLM runs."""
    return await _check("input", context or {}, omniguard_judge, explain_unsafe)


@action(name=OUTPUT_ACTION, is_system_action=True)
async def omniguard_check_output(
    context: Mapping[str, Any] | None = None,
    omniguard_judge: OmniGuard | None = None,
    explain_unsafe: bool = True,
    config: Any = None,
    **_: Any,  # NeMo's streaming output rails pass every rail parameter (llm, ...)
) -> RailOutcome:
    """Judge the bot's message in the context of the user's message. Streaming output rails
    call it without registered parameters: the judge then comes from ``config.custom_data``."""
    if omniguard_judge is None and config is not None:
        omniguard_judge = getattr(config, "custom_data", {}).get(JUDGE_PARAM)
    return await _check("output", context or {}, omniguard_judge, explain_unsafe)


async def _check(
    direction: Literal["input", "output"],
    context: Mapping[str, Any],
    judge: OmniGuard | None,
    explain_unsafe: bool,
) -> RailOutcome:
    def conversation() -> Conversation:  # converted inside the judge: a bad part is a verdict
        user = Turn("user", parts_from_openai(context.get("user_message")))
        if direction == "input":
            return Conversation((user,))
        bot = Turn("assistant", parts_from_openai(context.get("bot_message")))
        return Conversation((user, bot) if user.parts else (bot,))

    on_error = "block"  # until a judge says otherwise
    try:
        judge = judge if judge is not None else OmniGuard.shared()
        on_error = judge.config.on_error
        verdict = await judge.acheck(conversation, direction=direction, explain_unsafe=explain_unsafe)
    except Exception as exc:  # noqa: BLE001 - a rail must decide, never crash the host app
        if on_error == "raise":
            raise
        # only a judge that cannot even be built gets here (every check failure is a verdict)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        log.warning("omniguard %s rail has no judge (%s)", direction, reason)
        verdict = Verdict(safe=on_error == "allow", error=f"{getattr(exc, 'kind', 'config')}: {reason}", direction=direction)
    return outcome_from_verdict(verdict)


def outcome_from_verdict(verdict: Verdict) -> RailOutcome:
    """A Verdict as NeMo's engine-neutral outcome. A judge error that blocks is marked
    ``failed`` (NeMo's flag for "blocked because the rail could not decide")."""
    metadata = {
        "categories": list(verdict.category_codes),
        "category_names": list(verdict.category_names),
        "critique": verdict.critique,
        "error": verdict.error,
        "verdict": verdict.to_dict(),
    }
    reason = verdict.summary()
    if verdict.safe:
        return RailOutcome.allow(reason=reason, metadata=metadata)
    if verdict.error:
        return RailOutcome.failure(reason=reason, metadata=metadata)
    return RailOutcome.block(reason=reason, metadata=metadata)
