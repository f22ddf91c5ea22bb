"""``acompletion`` / ``completion``: LiteLLM's SDK calls with every OmniGuard check they ask for.

LiteLLM's SDK runs a guardrail's pre-call and post-call hooks on ``litellm.acompletion`` but
no post-call hook on a stream, and no hook at all on sync ``litellm.completion``. These take
the same arguments and run the checks of every :class:`OmniGuardGuardrail` in
``litellm.callbacks`` that the call asks for (``guardrails=[...]`` or ``default_on``):

- ``acompletion``: LiteLLM runs the pre-call (and whole-answer) checks; a stream is returned
  wrapped, its chunks passing the core stream rail (nothing unjudged is yielded; a block raises
  :class:`OmniGuardViolation` after the last judged chunk);
- ``completion``: the same checks, run here on the stream rail's background loop; a stream is
  a sync iterator over the rail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import litellm
from litellm.types.guardrails import GuardrailEventHooks

from omniguard_plugins.openai_answers import AnswerStream
from omniguard_plugins.streaming import StreamRail, Window, background_loop, moderate

from .guardrail import GUARDED_CALL, OmniGuardGuardrail, OmniGuardViolation, _answered, _audio_format

__all__ = ["GuardedStream", "acompletion", "completion"]

T = TypeVar("T")


class GuardedStream:
    """A LiteLLM stream whose chunks come out as the stream rail releases them; every other
    attribute is the wrapped stream's (``model``, ``_hidden_params``, ...)."""

    def __init__(self, stream: Any, chunks: AsyncIterator[Any]) -> None:
        self._stream = stream
        self._chunks = chunks

    def __aiter__(self) -> GuardedStream:
        return self

    async def __anext__(self) -> Any:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


async def acompletion(*args: Any, call: Callable[..., Awaitable[Any]] | None = None, **kwargs: Any) -> Any:
    """``litellm.acompletion`` with its guardrails' post-call check on streams too. ``call``:
    the LiteLLM call to make instead (a ``Router``'s ``acompletion``), same arguments."""
    token = GUARDED_CALL.set(True)
    try:
        response = await (call or litellm.acompletion)(*args, **kwargs)
    finally:
        GUARDED_CALL.reset(token)
    if kwargs.get("stream") is not True:
        return response
    chunks: AsyncIterator[Any] = response
    for guardrail in _guardrails(kwargs, GuardrailEventHooks.post_call):
        chunks = guardrail.guard_stream(chunks, kwargs)
    return response if chunks is response else GuardedStream(response, chunks)


def completion(*args: Any, call: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``litellm.completion`` with the checks LiteLLM skips on sync calls: the request before
    the LLM sees it, the answer (or each stream window) before the caller does. ``call``: the
    LiteLLM call to make instead (a ``Router``'s ``completion``), same arguments."""
    data = {**kwargs, "messages": kwargs.get("messages", args[1] if len(args) > 1 else None)}
    for guardrail in _guardrails(data, GuardrailEventHooks.pre_call):
        _run(guardrail.async_pre_call_hook(None, None, data, "completion"))
    token = GUARDED_CALL.set(True)
    try:
        response = (call or litellm.completion)(*args, **kwargs)
    finally:
        GUARDED_CALL.reset(token)
    answers = _guardrails(data, GuardrailEventHooks.post_call)
    if kwargs.get("stream") is not True:
        for guardrail in answers:
            _run(guardrail.async_post_call_success_hook(data, None, response))
        return response
    stream: Iterator[Any] = iter(response)
    for guardrail in answers:
        stream = _moderated(stream, guardrail, data)
    return stream


def _moderated(stream: Iterator[Any], guardrail: OmniGuardGuardrail, data: Mapping[str, Any]) -> Iterator[Any]:
    """The sync twin of :meth:`OmniGuardGuardrail.guard_stream` (the sync rail driver)."""
    reader = AnswerStream(audio_format=_audio_format(data) or "pcm16")
    messages = data["messages"]

    async def judge(window: Window) -> Any:
        return await guardrail.checker.check(_answered(messages, window.parts), "output")

    rail: StreamRail[Any] = StreamRail(guardrail.stream_settings, read=reader.read)
    yield from moderate(stream, rail, reader.judge(judge))
    if rail.blocked is not None:
        raise OmniGuardViolation(guardrail.guardrail_name, "post_call", rail.blocked)


def _guardrails(data: Mapping[str, Any], hook: GuardrailEventHooks) -> list[OmniGuardGuardrail]:
    """The OmniGuard guardrails in ``litellm.callbacks`` that this call asks to run at ``hook``."""
    found = [cb for cb in litellm.callbacks if isinstance(cb, OmniGuardGuardrail)]
    if hook == GuardrailEventHooks.post_call:
        return [g for g in found if g.checks_answers(data)]
    return [g for g in found if data.get("messages") and g.should_run_guardrail(data=data, event_type=hook) is True]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a check from sync code on the stream rail's one background loop."""
    return asyncio.run_coroutine_threadsafe(coroutine, background_loop()).result()
