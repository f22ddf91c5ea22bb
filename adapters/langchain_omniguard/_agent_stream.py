"""Streaming for the agent middleware: the model's tokens pass the core stream rail before any
stream mode can show them, and tool results are judged on the wire.

``agent.stream(stream_mode="messages")`` shows what the chat model emits through its callbacks,
long before ``after_model`` runs; LangGraph's stream transformers only see
``stream_events(version="v3")``. So the middleware's ``wrap_model_call`` hands the agent a copy
of its model whose ``_stream``/``_astream`` run through the rail (:func:`guarded_model`): every
token, tool-call argument delta and media block is released only once judged, whichever mode
(or the v3 protocol, which is built from the same ``_stream``) reads it; an unsafe verdict stops
the model and ends the stream with the refusal. The copy keeps the model's class as a base, so
``bind_tools``, profiles and provider checks behave as before.

:class:`ToolResultsTransformer` is the stream transformer (registered like ``PIIMiddleware``'s)
for the v3 ``tools`` channel, which shows a tool's output as the tool returns it, before the
middleware's ``wrap_tool_call`` has judged it: it withholds streamed output deltas and judges
each finished tool result, replacing an unsafe one (or failing the run for ``"error"``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables.config import run_in_executor
from langgraph.stream import StreamTransformer

from omniguard_plugins import Verdict
from omniguard_plugins.content import Turn
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.streaming import amoderate, moderate

from ._judging import format_violation, violation
from ._stream import OutputRail

if TYPE_CHECKING:
    from langgraph.stream._types import ProtocolEvent

    from .middleware import OmniGuardMiddleware, _Planned

__all__ = ["ModelGate", "ToolResultsTransformer", "gate_scope", "guarded_model"]


@dataclass
class ModelGate:
    """One model call's output on the rail, and how a block ends it. ``out`` is the rail of
    the latest stream (a retrying middleware may call the model more than once)."""

    make_out: Callable[[], OutputRail]
    exit_behavior: str
    violation_message: str | None
    #: the user's turn the reply answers (context for every check of it)
    user: tuple[Turn, ...] = ()
    out: OutputRail | None = None

    def _start(self) -> OutputRail:
        self.out = self.make_out()
        return self.out

    def _refusal(self, out: OutputRail) -> ChatGenerationChunk:
        check, verdict = out.blocked()  # type: ignore[misc]
        if self.exit_behavior == "error":
            raise violation(check, verdict)
        return ChatGenerationChunk(message=AIMessageChunk(content=format_violation(self.violation_message, verdict)))

    def stream(self, source: Iterator[ChatGenerationChunk]) -> Iterator[ChatGenerationChunk]:
        out = self._start()
        yield from moderate(source, out.rail, out.judge_window, on_verdict=out.recorded)
        if out.rail.blocked is not None:
            yield self._refusal(out)

    async def astream(self, source: AsyncIterator[ChatGenerationChunk]) -> AsyncIterator[ChatGenerationChunk]:
        out = self._start()
        async for chunk in amoderate(source, out.rail, out.judge_window):
            yield chunk
        if out.rail.blocked is not None:
            yield self._refusal(out)


_GATE: ContextVar[ModelGate | None] = ContextVar("omniguard_model_gate", default=None)


@contextlib.contextmanager
def gate_scope(gate: ModelGate) -> Iterator[ModelGate]:
    """The gate the guarded model streams through, for the model calls inside this block."""
    token = _GATE.set(gate)
    try:
        yield gate
    finally:
        _GATE.reset(token)


class _Guarded:
    """Mixed in before a chat model's class: its streams go through the current gate."""

    _omniguard_base: ClassVar[type[BaseChatModel]]

    def _omniguard_source(self, messages: Any, stop: Any, run_manager: Any, **kwargs: Any) -> Iterator[Any]:
        base = self._omniguard_base
        if base._stream is not BaseChatModel._stream:
            return base._stream(self, messages, stop=stop, run_manager=run_manager, **kwargs)  # type: ignore[arg-type]
        result = base._generate(self, messages, stop=stop, run_manager=run_manager, **kwargs)  # type: ignore[arg-type]
        return iter([_as_chunk(result.generations[0].message)])

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Iterator[Any]:
        source = self._omniguard_source(messages, stop, run_manager, **kwargs)
        gate = _GATE.get()
        return gate.stream(source) if gate is not None else source

    async def _astream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        base = self._omniguard_base
        if base._astream is not BaseChatModel._astream:
            source = base._astream(self, messages, stop=stop, run_manager=run_manager, **kwargs)  # type: ignore[arg-type]
        else:
            source = _threaded(self._omniguard_source(messages, stop, run_manager, **kwargs))
        gate = _GATE.get()
        async for chunk in gate.astream(source) if gate is not None else source:
            yield chunk


def _as_chunk(message: BaseMessage) -> ChatGenerationChunk:
    """A model that cannot stream answers in one chunk (judged by the final check alone)."""
    calls = [{"name": c["name"], "args": json.dumps(c["args"], ensure_ascii=False), "id": c["id"], "index": i}
             for i, c in enumerate(getattr(message, "tool_calls", None) or [])]
    return ChatGenerationChunk(message=AIMessageChunk(
        content=message.content, id=message.id, additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata, tool_call_chunks=calls))


async def _threaded(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    """A sync model stream read on a worker thread, as LangChain's default ``_astream`` does."""
    done = object()
    try:
        while (chunk := await run_in_executor(None, next, chunks, done)) is not done:
            yield chunk
    finally:
        getattr(chunks, "close", lambda: None)()


_CLASSES: dict[type, type] = {}


def guarded_model(model: BaseChatModel) -> BaseChatModel:
    """``model`` seen through a subclass whose streams pass the gate of :func:`gate_scope`.

    The view shares the model's state (its fields, private attributes), so a model that counts
    its calls or holds a client behaves exactly as itself; only ``_stream``/``_astream`` differ.
    """
    base = type(model)
    if isinstance(model, _Guarded):
        return model
    cls = _CLASSES.get(base)
    if cls is None:
        cls = _CLASSES[base] = type(f"OmniGuarded{base.__name__}", (_Guarded, base),
                                    {"_omniguard_base": base, "__module__": __name__})
    view = cls.__new__(cls)
    try:
        for slot in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
            object.__setattr__(view, slot, getattr(model, slot))
    except (AttributeError, TypeError) as exc:
        raise ConfigError(f"cannot moderate the streams of a {base.__name__}: {exc}") from None
    return view


class ToolResultsTransformer(StreamTransformer):
    """The v3 ``tools`` channel, judged: output deltas are withheld, and each finished tool
    result is judged before anyone sees it (an unsafe one is replaced, or fails the run)."""

    before_builtins: ClassVar[bool] = True
    supports_sync: ClassVar[bool] = True
    required_stream_modes: ClassVar[tuple[str, ...]] = ("tools",)

    def __init__(self, scope: tuple[str, ...] = (), *, guard: OmniGuardMiddleware) -> None:
        super().__init__(scope)
        self._guard = guard

    def init(self) -> dict[str, Any]:
        return {}

    def _plan(self, event: ProtocolEvent) -> tuple[dict[str, Any], _Planned] | None:
        data = event["params"].get("data")
        if event["method"] != "tools" or not isinstance(data, dict):
            return None
        if data.get("event") == "tool-output-delta":  # the judged result comes with tool-finished
            delta = data.get("delta")
            data["delta"] = "" if isinstance(delta, str) else type(delta)() if isinstance(delta, (dict, list)) else None
            return None
        output = data.get("output")
        if data.get("event") != "tool-finished" or not isinstance(output, ToolMessage):
            return None
        plan = self._guard._plan_tool(output)
        return (data, plan) if plan is not None else None

    def _apply(self, data: dict[str, Any], plan: _Planned, verdict: Verdict) -> bool:
        data["output"] = self._guard._tool_result(data["output"], plan, verdict)
        return True

    def process(self, event: ProtocolEvent) -> bool:
        planned = self._plan(event)
        if planned is not None:
            self._apply(*planned, self._guard._judge_sync([planned[1]])[0])
        return not _withheld(event)

    async def aprocess(self, event: ProtocolEvent) -> bool:
        planned = self._plan(event)
        if planned is not None:
            self._apply(*planned, (await self._guard._judge_async([planned[1]]))[0])
        return not _withheld(event)


def _withheld(event: ProtocolEvent) -> bool:
    data = event["params"].get("data")
    return event["method"] == "tools" and isinstance(data, dict) and data.get("event") == "tool-output-delta"


def transformer_factory(guard: OmniGuardMiddleware) -> Callable[[tuple[str, ...]], ToolResultsTransformer]:
    def factory(scope: tuple[str, ...]) -> ToolResultsTransformer:
        return ToolResultsTransformer(scope, guard=guard)

    return factory
