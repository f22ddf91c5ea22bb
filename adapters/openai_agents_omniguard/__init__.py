"""OmniGuard for the OpenAI Agents SDK: ready input, output, tool-input and tool-output guardrails
backed by the shared judge, judging text and media (images, audio, video) alike.

    from agents import Agent
    from openai_agents_omniguard import omniguard_input, omniguard_output
    agent = Agent(name="assistant", input_guardrails=[omniguard_input], output_guardrails=[omniguard_output])

See :mod:`.guardrails` for what each one judges and how it blocks, and :mod:`.streaming` for
``guarded_events``, a streamed run's events through the core stream rail.
"""

from __future__ import annotations

from ._convert import input_conversation, output_parts, tool_output_parts
from .guardrails import (
    ON_UNSAFE,
    OnUnsafe,
    omniguard_input,
    omniguard_input_guardrail,
    omniguard_output,
    omniguard_output_guardrail,
    omniguard_tool_input,
    omniguard_tool_input_guardrail,
    omniguard_tool_output,
    omniguard_tool_output_guardrail,
)
from .streaming import guarded_events

__all__ = [
    "ON_UNSAFE",
    "OnUnsafe",
    "guarded_events",
    "input_conversation",
    "omniguard_input",
    "omniguard_input_guardrail",
    "omniguard_output",
    "omniguard_output_guardrail",
    "omniguard_tool_input",
    "omniguard_tool_input_guardrail",
    "omniguard_tool_output",
    "omniguard_tool_output_guardrail",
    "output_parts",
    "tool_output_parts",
]
