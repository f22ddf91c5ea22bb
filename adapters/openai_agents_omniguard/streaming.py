"""A streamed run's events through the core stream rail: nothing unjudged is shown.

The SDK's output guardrail judges the *final* output, after ``Runner.run_streamed`` has already
handed the model's text deltas to the app. :func:`guarded_events` is the app's side of the rail:

    result = Runner.run_streamed(agent, request)
    async for event in guarded_events(result):
        ...                                   # every event, once the text before it is judged safe

Text deltas (answer text, refusals, reasoning, audio transcripts) and tool calls (the name, then
the argument deltas) are read as the answer's text and judged in overlapping windows while the run
goes on (:mod:`omniguard_plugins.streaming`); every event, text or not, is passed on in order, once
safe verdicts cover the text before it. An audio delta waits for the final check (its transcript
is what is judged). When the run's events end, the whole text is judged once more. On an unsafe
verdict nothing more is passed on, the run is cancelled and
:class:`~omniguard_plugins.errors.GuardViolation` is raised (stage ``output``, its verdict on it).

This governs what the app *shows*. Tools run inside the SDK while the events stream: a tool call
is stopped before it runs by ``omniguard_tool_input``, not by this stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import MediaPart
from omniguard_plugins.doors import Ask, violation
from omniguard_plugins.policy import Policy
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate
from omniguard_plugins.verdict import Mode

__all__ = ["guarded_events"]

#: raw Responses events whose ``delta`` is text the app shows
_TEXT_DELTAS = frozenset({
    "response.output_text.delta", "response.refusal.delta", "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta", "response.audio.transcript.delta",
    "response.function_call_arguments.delta", "response.custom_tool_call_input.delta",
    "response.mcp_call_arguments.delta",
})
#: raw events whose payload is media the rail cannot read as text: held for the final check
_OPAQUE = frozenset({"response.audio.delta"})


class _Reader:
    """The rail's view of one run's events."""

    def __init__(self) -> None:
        self.rail: StreamRail[Any] | None = None

    def __call__(self, event: Any) -> tuple[str | None, Sequence[MediaPart]]:
        data = getattr(event, "data", None) if getattr(event, "type", None) == "raw_response_event" else None
        kind = getattr(data, "type", None)
        if kind in _TEXT_DELTAS:
            delta = getattr(data, "delta", "")
            return (delta if isinstance(delta, str) else ""), ()
        if kind in _OPAQUE:
            return None, ()
        if kind == "response.output_item.added":  # a new item: a blank line, and a tool call's name
            item = getattr(data, "item", None)
            name = getattr(item, "name", None) if getattr(item, "type", None) == "function_call" else None
            lead = "\n\n" if self.rail is not None and self.rail.text.strip() else ""
            return lead + (f"{name} " if name else ""), ()
        return "", ()


async def guarded_events(
    result: Any,
    judge: OmniGuard | None = None,
    *,
    policy: Policy | Mapping[str, Any] | None = None,
    mode: Mode | None = None,
    settings: StreamSettings | None = None,
) -> AsyncIterator[Any]:
    """``result.stream_events()`` (a ``RunResultStreaming``) through the stream rail; see the
    module docstring. ``judge`` defaults to the shared one."""
    chosen = judge if judge is not None else OmniGuard.shared()
    reader = _Reader()
    rail: StreamRail[Any] = StreamRail(settings or StreamSettings(), read=reader)
    reader.rail = rail

    async def judge_window(window: Window) -> Verdict:
        return await chosen.acheck(Ask(conversation=window.conversation(), stage="output", policy=policy, mode=mode))

    async for event in amoderate(result.stream_events(), rail, judge_window):
        yield event
    if rail.blocked is not None:
        result.cancel()
        raise violation(rail.blocked, "output", rail.text)
