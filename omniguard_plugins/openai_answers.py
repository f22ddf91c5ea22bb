"""What an OpenAI-style answer says, for the output rail: a whole message or a stream chunk.

The gateway reads plain JSON and the LiteLLM guardrail reads LiteLLM's response objects, so
both shapes are accepted (mappings, or objects with the same attribute names). A tool call's
arguments count as output: an action the model takes is judged like text it shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["answer_text", "delta_text", "field"]


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` for an object; None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def answer_text(message: Any) -> str:
    """A completion message's text: its content (a str or text parts) and tool-call arguments."""
    if message is None:
        return ""
    content = field(message, "content")
    if isinstance(content, str):
        parts = [content]
    else:
        parts = [t for t in (field(p, "text") for p in content or []) if isinstance(t, str)]
    parts.extend(_arguments(field(message, "tool_calls")))
    return "\n".join(p for p in parts if p)


def delta_text(chunk: Any) -> str:
    """The text a ``chat.completion.chunk`` adds: choice 0's content and tool-call arguments."""
    choices = field(chunk, "choices") or []
    delta = field(choices[0], "delta") if choices else None
    if delta is None:
        return ""
    content = field(delta, "content")
    return (content if isinstance(content, str) else "") + "".join(_arguments(field(delta, "tool_calls")))


def _arguments(calls: Any) -> list[str]:
    out = []
    for call in calls or []:
        arguments = field(field(call, "function"), "arguments")
        if isinstance(arguments, str):
            out.append(arguments)
    return out
