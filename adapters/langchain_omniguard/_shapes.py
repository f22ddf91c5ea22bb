"""Put a refusal where blocked content was, in the shape the chain expects there.

``exit_behavior="end"`` answers with a refusal (an ``AIMessage``, or a ``str`` where the chain
produces strings); ``"replace"`` keeps the blocked value's own shape and swaps its content.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk, convert_to_messages
from langchain_core.prompt_values import ChatPromptValue, PromptValue

from omniguard_plugins.content import Role

from ._convert import role_of

__all__ = ["refusal_like", "replace_content"]


def refusal_like(sample: Any, text: str) -> Any:
    """A refusal in the type of ``sample`` (an output chunk or value, or an output type)."""
    kind = sample if isinstance(sample, type) else type(sample)
    if isinstance(kind, type) and issubclass(kind, str):
        return text
    if isinstance(kind, type) and issubclass(kind, BaseMessageChunk):
        return AIMessageChunk(content=text)
    return AIMessage(content=text)


def _replace_in(messages: list[BaseMessage], text: str, role: Role) -> list[BaseMessage]:
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        if role_of(out[i]) == role:
            out[i] = out[i].model_copy(update={"content": text})
            return out
    if out:
        out[-1] = out[-1].model_copy(update={"content": text})
    return out


def replace_content(value: Any, text: str, role: Role = "user") -> Any:
    """``value`` with its judged content replaced by ``text``, keeping its type.

    A message list or prompt has its last ``role`` message replaced; a plain dict every value
    that was judged as content (strings, bytes, paths, messages, content blocks).
    """
    if isinstance(value, str):
        return text
    if isinstance(value, BaseMessage):
        return value.model_copy(update={"content": text})
    if isinstance(value, PromptValue):
        return ChatPromptValue(messages=_replace_in(value.to_messages(), text, role))
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, BaseMessage) for m in value):
        return _replace_in(list(value), text, role)
    if isinstance(value, Mapping):
        if isinstance(value.get("messages"), (list, tuple)):
            return {**value, "messages": _replace_in(convert_to_messages(value["messages"]), text, role)}
        return {
            key: (text if isinstance(v, (str, bytes, bytearray, Path, BaseMessage, list, tuple, Mapping)) else v)
            for key, v in value.items()
        }
    return text
