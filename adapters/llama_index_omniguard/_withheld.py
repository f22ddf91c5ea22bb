"""Messages an OmniGuardLLM blocked, remembered by content.

An agent keeps a refused turn in its memory: the user's unsafe message (or a tool's unsafe
result) is sent again as history on every later call. The wrapper remembers what it blocked and
hands the inner LLM a placeholder in its place, so a blocked message never reaches the inner LLM,
on this call or a later one. Nothing is hashed until something was blocked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, TextBlock

from ._steps import Call

__all__ = ["PLACEHOLDER", "Withheld"]

#: what the inner LLM reads instead of a message OmniGuard blocked
PLACEHOLDER = "[withheld by OmniGuard: flagged as unsafe]"


class Withheld:
    def __init__(self, limit: int = 1024) -> None:
        self._keys: dict[str, None] = {}  # insertion-ordered: the oldest goes first past the limit
        self._limit = limit

    def __bool__(self) -> bool:
        return bool(self._keys)

    def add(self, messages: Iterable[ChatMessage]) -> None:
        for message in messages:
            self._keys[_key(message)] = None
            while len(self._keys) > self._limit:
                del self._keys[next(iter(self._keys))]

    def scrub(self, call: Call) -> Call:
        """The call with every remembered message in its history replaced by the placeholder
        (its role and ``additional_kwargs``, e.g. a tool call id, kept)."""
        if not self._keys:
            return call
        args: tuple[Any, ...] = call.args
        if args and _history(args[0]):
            args = (self._scrubbed(args[0]), *args[1:])
        kwargs = dict(call.kwargs)
        if _history(kwargs.get("chat_history")):
            kwargs["chat_history"] = self._scrubbed(kwargs["chat_history"])
        return replace(call, args=args, kwargs=kwargs)

    def _scrubbed(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        return [m.model_copy(update={"blocks": [TextBlock(text=PLACEHOLDER)]}) if _key(m) in self._keys else m
                for m in messages]


def _history(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and any(isinstance(m, ChatMessage) for m in value)


def _key(message: ChatMessage) -> str:
    blocks = message.model_dump_json(include={"role", "blocks"})
    return hashlib.sha256(blocks.encode("utf-8", "replace")).hexdigest()
