"""The OmniGuard rail actions for NeMo Guardrails (``LLMRails``, Colang 1 and 2).

NeMo fills action parameters by name: ``context`` (the conversation variables, where
``user_message`` is a str or, for multimodal messages, the OpenAI parts list exactly as the
app sent it; ``tool_message`` / ``tool_calls`` in the tool rails) and any parameter registered
with ``rails.register_action_param`` (our judge, as ``omniguard_judge``). The decision is
returned as a ``RailOutcome``; the flows act on it.

Unlike NeMo's library rails, a rail that cannot judge does not wave content through: a judge
error, unreadable content or a bug here blocks unless the judge says ``on_error="allow"``.

``explain_unsafe`` is on by default here, unlike the other doors (which ask for a critique only
when their refusal shows it): NeMo's convention is that a rail's ``RailOutcome.reason`` says
why it blocked (``check_async``, IORails results and NeMo's telemetry read it), so the critique
goes there and into the metadata. Pass ``explain_unsafe=False`` in the flow to save that call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nemoguardrails.actions import action
from nemoguardrails.actions.actions import ActionResult
from nemoguardrails.actions.rail_outcome import RailOutcome
from nemoguardrails.utils import new_event_dict

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Part, Turn
from omniguard_plugins.doors import Ask, Stage, render_tool_call, summarize
from omniguard_plugins.errors import ContentError
from omniguard_plugins.openai_messages import parts_from_openai

from ._turn import stream_turn
from .names import (
    INPUT_ACTION,
    JUDGE_PARAM,
    OUTPUT_ACTION,
    REFUSAL,
    TOOL_INPUT_ACTION,
    TOOL_OUTPUT_ACTION,
    TOOL_PASSED_ACTION,
)

__all__ = [
    "omniguard_check_input",
    "omniguard_check_output",
    "omniguard_check_tool_input",
    "omniguard_check_tool_output",
    "omniguard_passed_tool_calls",
    "outcome_from_verdict",
]

log = logging.getLogger("omniguard.nemo")

Context = Mapping[str, Any]


@action(name=INPUT_ACTION, is_system_action=True)
async def omniguard_check_input(
    context: Context | None = None,
    omniguard_judge: OmniGuard | None = None,
    explain_unsafe: bool = True,
    config: Any = None,
    **_: Any,
) -> RailOutcome:
    """Judge the user's message (text and media). Blocks unsafe input before the main LLM runs."""
    context = context or {}
    outcome = await _check("input", lambda: Conversation((_user(context),)), _judge(omniguard_judge, config),
                           explain_unsafe)
    turn = stream_turn()
    if turn is not None:  # a nemoguardrails_omniguard.stream() turn: it needs the input's decision
        turn.input_outcome = outcome
    return outcome


@action(name=OUTPUT_ACTION, is_system_action=True)
async def omniguard_check_output(
    context: Context | None = None,
    omniguard_judge: OmniGuard | None = None,
    explain_unsafe: bool = True,
    config: Any = None,
    **_: Any,  # NeMo's streaming output rails pass every rail parameter (llm, ...)
) -> RailOutcome:
    """Judge the bot's message in the context of the user's message. Streaming output rails
    call it without registered parameters: the judge then comes from ``config.custom_data``.

    Inside :func:`~nemoguardrails_omniguard.stream` the answer was already judged on the core
    stream rail as it streamed (windows and the whole answer): the outcome is that verdict."""
    context = context or {}
    turn = stream_turn()
    if turn is not None:
        verdict = await turn.answer_verdict()
        if verdict is not None:
            return outcome_from_verdict(verdict, "output")
    if _is_own_refusal(context.get("bot_message"), config):
        # NeMo skips output rails for a config's own bot messages, except in its streaming output
        # rails, where judging the input's refusal would end the stream as an *output* block
        return RailOutcome.allow(reason="the config's own refusal is not model output")
    return await _check("output", lambda: _after_user(context, parts_from_openai(context.get("bot_message"))),
                        _judge(omniguard_judge, config), explain_unsafe)


@action(name=TOOL_INPUT_ACTION, is_system_action=True)
async def omniguard_check_tool_input(
    context: Context | None = None,
    omniguard_judge: OmniGuard | None = None,
    explain_unsafe: bool = True,
    config: Any = None,
    **_: Any,
) -> RailOutcome:
    """Judge one tool result (``context["tool_message"]``, text or an OpenAI parts list) before
    the model reads it: the ``tool`` stage, as every door judges tool results."""
    context = context or {}

    def conversation() -> Conversation:
        return Conversation((Turn("user", parts_from_openai(context.get("tool_message"))),))

    return await _check("tool", conversation, _judge(omniguard_judge, config), explain_unsafe)


@action(name=TOOL_OUTPUT_ACTION, is_system_action=True)
async def omniguard_check_tool_output(
    context: Context | None = None,
    omniguard_judge: OmniGuard | None = None,
    explain_unsafe: bool = True,
    config: Any = None,
    **_: Any,
) -> RailOutcome:
    """Judge the model's tool calls (``context["tool_calls"]``) before the app runs them: each
    call rendered by the core's ``render_tool_call``, as the answer to the user's message."""
    context = context or {}
    return await _check("output", lambda: _after_user(context, _tool_call_parts(context.get("tool_calls"))),
                        _judge(omniguard_judge, config), explain_unsafe)


@action(name=TOOL_PASSED_ACTION, is_system_action=True)
async def omniguard_passed_tool_calls(context: Context | None = None, **_: Any) -> ActionResult:
    """Tell NeMo which tool calls passed the tool output rail: all of them, or none when its
    outcome (``$omniguard_result``) blocked. NeMo 0.24.1 hands every call of the turn back to
    the app, blocked or not, unless a ``StartToolCallBotAction`` event names the ones that
    passed; this sends that event (the value is the same list)."""
    context = context or {}
    outcome = context.get("omniguard_result")
    passed = [] if not isinstance(outcome, RailOutcome) or outcome.is_blocked else list(context.get("tool_calls") or [])
    return ActionResult(return_value=passed, events=[new_event_dict("StartToolCallBotAction", tool_calls=passed)])


def _is_own_refusal(message: Any, config: Any) -> bool:
    """``message`` is what ``bot refuse to respond`` says in this config (NeMo's default, or the
    config's own ``define bot refuse to respond``)."""
    if not isinstance(message, str):
        return False
    own = getattr(config, "bot_messages", None) or {}
    return message.strip() in {REFUSAL, *(str(m).strip() for m in own.get("refuse to respond", ()))}


def _user(context: Context) -> Turn:
    return Turn("user", parts_from_openai(context.get("user_message")))


def _after_user(context: Context, parts: Sequence[Part]) -> Conversation:
    user, bot = _user(context), Turn("assistant", tuple(parts))
    return Conversation((user, bot) if user.parts else (bot,))


def _tool_call_parts(calls: Any) -> tuple[Part, ...]:
    """NeMo's tool calls (OpenAI's shape: ``{"id", "type", "function": {"name", "arguments"}}``)."""
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)) or not calls:
        raise ContentError(f"tool_calls must be a non-empty list of tool calls, got {type(calls).__name__}")
    parts: list[Part] = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ContentError("a tool call needs function.name (OpenAI's tool-call shape)")
        parts.extend(render_tool_call(function["name"], function.get("arguments") or {}))
    return tuple(parts)


def _judge(judge: OmniGuard | None, config: Any) -> OmniGuard | None:
    """The registered judge; else the one ``register`` left in ``config.custom_data`` (NeMo's
    streaming output rails pass no registered parameters); else None (the shared judge)."""
    if judge is None and config is not None:
        judge = getattr(config, "custom_data", {}).get(JUDGE_PARAM)
    return judge


async def _check(
    stage: Stage,
    conversation: Callable[[], Conversation],
    judge: OmniGuard | None,
    explain_unsafe: bool,
) -> RailOutcome:
    """One check, decided: the conversation is built inside the judge, so unreadable content
    is a verdict under ``on_error`` like any other failure."""
    on_error = "block"  # until a judge says otherwise
    try:
        judge = judge if judge is not None else OmniGuard.shared()
        on_error = judge.config.on_error
        verdict = await judge.acheck(Ask(conversation=conversation, stage=stage, explain=explain_unsafe))
    except Exception as exc:  # noqa: BLE001 - a rail must decide, never crash the host app
        if on_error == "raise":
            raise
        # only a judge that cannot even be built gets here (every check failure is a verdict)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        log.warning("omniguard %s rail has no judge (%s)", stage, reason)
        direction = "output" if stage == "output" else "input"
        verdict = Verdict(safe=on_error == "allow", error=f"{getattr(exc, 'kind', 'config')}: {reason}",
                          direction=direction)
    return outcome_from_verdict(verdict, stage)


def outcome_from_verdict(verdict: Verdict, stage: Stage | None = None) -> RailOutcome:
    """A Verdict as NeMo's engine-neutral outcome: ``metadata["verdict"]`` is the verdict
    summary every door sends (``summarize(verdict, stage).to_json()``), with its ``categories``,
    ``category_names``, ``critique`` and ``error`` also at the top for flows (``$omniguard_result
    .metadata["categories"]``). A judge error that blocks is marked ``failed`` (NeMo's flag for
    "blocked because the rail could not decide")."""
    if stage is None:
        stage = "output" if verdict.direction == "output" else "input"
    summary = summarize(verdict, stage)
    data = summary.to_json()
    metadata = {key: data[key] for key in ("categories", "category_names", "critique", "error")}
    metadata["verdict"] = data
    if verdict.safe:
        return RailOutcome.allow(reason=verdict.summary(), metadata=metadata)
    reason = summary.blocked_message()
    if verdict.error:
        return RailOutcome.failure(reason=reason, metadata=metadata)
    return RailOutcome.block(reason=reason, metadata=metadata)
