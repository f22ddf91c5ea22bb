"""The agent middleware's output rail for the model: a gate in front of the callbacks.

Everything anyone sees of a model's reply while an agent runs reaches them through LangChain
callbacks: ``stream_mode="messages"`` is LangGraph's messages handler (``on_llm_new_token``,
``on_llm_end``), ``astream_events`` its event tracer, ``stream_events(version="v3")`` the protocol
events (``on_stream_event``), and a user's own handlers the same calls. So ``wrap_model_call``
runs the model with one :class:`ModelGate` in place of the run's callback handlers: the gate
passes every other callback straight on, and holds each model run's tokens, protocol events and
``on_llm_end`` on the core stream rail, handing them to the real handlers only once judged (the
whole reply is judged at ``on_llm_end``, also when the model did not stream). An unsafe verdict
stops the model at once (the gate raises :class:`Blocked` from the callback), shows the refusal
in the stream instead, and the middleware answers with it.

The model object is never touched or copied: a bound model (``.bind``, ``.bind_tools``,
``.with_config``), fallbacks, a provider with its own protocol-event streaming, pickling, run
names and the model's own state all stay the user's. Not gated: handlers attached to the model
object itself (``ChatOpenAI(callbacks=[...])``) and LangSmith's tracer, which record the raw
run for the operator.

:class:`ToolResultsTransformer` is the stream transformer (registered like ``PIIMiddleware``'s)
for the v3 ``tools`` channel, which shows a tool's output as the tool returns it, before the
middleware's ``wrap_tool_call`` has judged it: it withholds streamed output deltas and judges
each finished tool result, replacing an unsafe one (or failing the run for ``"error"``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler, BaseCallbackManager
from langchain_core.callbacks.manager import ahandle_event, handle_event
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables.config import RunnableConfig, ensure_config, var_child_runnable_config
from langchain_core.tracers.langchain import LangChainTracer
from langgraph.stream import StreamTransformer

from omniguard_plugins import Verdict
from omniguard_plugins.content import MediaPart, Text
from omniguard_plugins.doors import RailSession
from omniguard_plugins.errors import ContentError, GuardViolation
from omniguard_plugins.streaming import background_loop

from ._convert import parts_from_blocks
from ._judging import Check, record
from ._stream import OutputRail, has_output, read_chunk

if TYPE_CHECKING:
    from langgraph.stream._types import ProtocolEvent

__all__ = ["Blocked", "ModelGate", "ToolJudge", "ToolResultsTransformer", "read_event", "transformer_factory"]

T = TypeVar("T")

#: the agent's view of a blocked reply: the message to answer with instead (or GuardViolation)
Apply = Callable[[Check, Verdict, BaseMessage], BaseMessage]

_TEXT_EVENT_TYPES = {"text-delta": "text", "reasoning-delta": "reasoning", "tool-call-delta": "args"}


class Blocked(Exception):  # noqa: N818 - a signal, not a failure
    """Raised from a callback into the model call to stop it at once; the middleware catches it.
    A retry or fallback in between that catches it gets nowhere: every later model run in the
    same call is stopped before it starts, and the middleware answers with this block."""

    def __init__(self, answer: BaseMessage | None, error: GuardViolation | None = None) -> None:
        super().__init__("OmniGuard stopped the model's reply")
        self.answer = answer
        self.error = error


def read_event(event: Mapping[str, Any]) -> tuple[str | None, Sequence[MediaPart]]:
    """What a v3 protocol event adds to the reply: text (text, reasoning and tool-call argument
    deltas; a tool call's name when it starts), media (a finished image/audio/video block), or
    None for content the rail cannot read (encoded data deltas, unknown blocks), which waits
    for the final check of the whole reply."""
    kind = event.get("event")
    if kind == "content-block-delta":
        delta = event.get("delta") or {}
        key = _TEXT_EVENT_TYPES.get(str(delta.get("type")))
        return (str(delta.get(key) or ""), ()) if key else (None, ())
    block = event.get("content") or {}
    if kind == "content-block-start":
        return (f"{block['name']} " if block.get("type") == "tool_call_chunk" and block.get("name") else ""), ()
    if kind == "content-block-finish" and block.get("type") not in ("text", "reasoning", "tool_call", "tool_call_chunk",
                                                                     "invalid_tool_call"):
        try:
            parts = parts_from_blocks([block])
        except ContentError:
            return None, ()
        return ("", tuple(p for p in parts if not isinstance(p, Text))) if parts else (None, ())
    return "", ()


@dataclass
class _Held:
    """One callback to a model run's handlers, held until the rail has judged what it shows."""

    event: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    reads: tuple[str | None, Sequence[MediaPart]] = ("", ())


def _read_held(item: _Held) -> tuple[str | None, Sequence[MediaPart]]:
    return item.reads


@dataclass
class _Run:
    """One model run on the rail."""

    out: OutputRail
    session: RailSession[_Held]
    run_id: UUID
    message_id: str | None = None
    #: text was shown (a refusal then starts a new paragraph)
    shown: bool = False
    protocol: bool = False
    #: the open text block of a v3 reply (its index and the text shown in it)
    text_block: tuple[int, str] | None = None
    blocks: int = 0
    closed: bool = False
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict | None:
        """The rail's final verdict on the whole reply, once it passed."""
        finals = [v for v in self.out.rail.verdicts if v.details.get("stream_check") == "final"]
        return finals[-1] if finals else None


_IGNORE = {"on_llm_new_token": "ignore_llm", "on_llm_end": "ignore_llm", "on_llm_error": "ignore_llm",
           "on_stream_event": "ignore_llm"}
#: every other callback, passed on at once: (name, the handler flag that skips it)
_PASS = (("on_llm_start", "ignore_llm"), ("on_chat_model_start", "ignore_chat_model"),
         ("on_chain_start", "ignore_chain"), ("on_chain_end", "ignore_chain"), ("on_chain_error", "ignore_chain"),
         ("on_tool_start", "ignore_agent"), ("on_tool_end", "ignore_agent"), ("on_tool_error", "ignore_agent"),
         ("on_agent_action", "ignore_agent"), ("on_agent_finish", "ignore_agent"),
         ("on_retriever_start", "ignore_retriever"), ("on_retriever_end", "ignore_retriever"),
         ("on_retriever_error", "ignore_retriever"), ("on_text", None), ("on_retry", "ignore_retry"),
         ("on_custom_event", "ignore_custom_event"))


class ModelGate:
    """The callbacks of one ``wrap_model_call``: each chat model run inside it goes on a new
    :class:`OutputRail` (``make_out``), and a block is decided by ``apply`` (the middleware's
    one decision site). :attr:`last` is the run whose reply the agent got."""

    def __init__(self, make_out: Callable[[], OutputRail], apply: Apply, *, is_async: bool) -> None:
        self.make_out = make_out
        self.apply = apply
        self.is_async = is_async
        self.inner: list[BaseCallbackHandler] = []
        self.runs: dict[UUID, _Run] = {}
        self.last: _Run | None = None
        #: the block that stopped a run; every later run in this call is refused at its start
        self.stopped: Blocked | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[ModelGate]:
        """Run the model calls inside this block with the gate in front of their handlers."""
        config = ensure_config(var_child_runnable_config.get())
        token = var_child_runnable_config.set(self._gated(config))
        try:
            yield self
        finally:
            var_child_runnable_config.reset(token)

    def _gated(self, config: RunnableConfig) -> RunnableConfig:
        callbacks = config.get("callbacks")
        handlers: list[BaseCallbackHandler] = list(
            callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks or [])
        self.inner = [h for h in handlers if not isinstance(h, LangChainTracer)]
        face = _face(self, self.inner)
        kept = [face, *(h for h in handlers if isinstance(h, LangChainTracer))]
        if callbacks is None or isinstance(callbacks, list):
            return {**config, "callbacks": kept}
        manager = callbacks.copy()
        manager.handlers = kept
        manager.inheritable_handlers = [face, *(h for h in manager.inheritable_handlers
                                                if isinstance(h, LangChainTracer))]
        return {**config, "callbacks": manager}

    # ------------------------------------------------------------------ the rail, per run

    def start(self, run_id: UUID) -> None:
        if self.stopped is not None:
            raise self.stopped
        out = self.make_out()
        out.read = _read_held
        verdicts: list[Verdict] = []
        session = RailSession(out.rail, out.judge_window, on_verdict=lambda window, verdict: verdicts.append(verdict))
        self.runs[run_id] = _Run(out, session, run_id, verdicts=verdicts)

    def failed(self, run_id: UUID) -> bool:
        """The model run failed: stop judging it. False when the failure is the gate's own
        signal (its refusal was already shown), which is not passed on."""
        run = self.runs.get(run_id)
        if run is None:
            return True
        if self.is_async:
            run.session.cancel()
        else:  # the session lives on the background loop: cancel it there
            background_loop().call_soon_threadsafe(run.session.cancel)
        return not run.closed

    def held(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[_Run, _Held] | None:
        """The run a model callback belongs to and the callback, held; None for other runs."""
        run = self.runs.get(kwargs["run_id"])
        if run is None or run.closed:
            return None
        item = _Held(event, args, kwargs)
        if event == "on_llm_new_token":
            chunk = kwargs.get("chunk")
            message = chunk.message if isinstance(chunk, ChatGenerationChunk) else args[0]
            run.message_id = run.message_id or getattr(message, "id", None)
            item.reads = read_chunk(message)
        elif event == "on_stream_event":
            run.protocol = True
            if args[0].get("event") == "message-start":
                run.message_id = run.message_id or args[0].get("id")
            item.reads = read_event(args[0])
        else:  # on_llm_end carries the whole reply: it waits for the final check, which judges it
            message = _message(args[0])
            run.out.whole = message
            run.message_id = run.message_id or getattr(message, "id", None)
            item.reads = (None, ()) if message is None or has_output(message) else ("", ())
        return run, item

    async def feed(self, run: _Run, item: _Held, *, last: bool) -> list[_Held]:
        await run.session.feed(item)
        if last:
            await run.session.finish()
            self.last = run
        return run.session.take()

    def shown(self, run: _Run, item: _Held) -> None:
        """Note what a released callback shows (for the refusal that may follow it)."""
        if item.event == "on_llm_new_token" and item.reads[0]:
            run.shown = True
        if item.event == "on_stream_event":
            event = item.args[0]
            if event.get("event") == "content-block-start":
                run.blocks = max(run.blocks, int(event.get("index", 0)) + 1)
                if (event.get("content") or {}).get("type") == "text":
                    run.text_block = (int(event.get("index", 0)), "")
            elif run.text_block and event.get("index") == run.text_block[0]:
                if event.get("event") == "content-block-delta":
                    run.text_block = (run.text_block[0], run.text_block[1] + str(item.reads[0] or ""))
                    run.shown = run.shown or bool(item.reads[0])
                elif event.get("event") == "content-block-finish":
                    run.text_block = None

    def ending(self, run: _Run) -> tuple[list[_Held], Blocked]:
        """A blocked run: the callbacks that show the refusal instead, and the signal to raise."""
        run.closed = True
        check, verdict = run.out.blocked()  # type: ignore[misc]
        ids = {"run_id": run.run_id}
        try:
            answer = self.apply(check, verdict, AIMessage(content=run.out.rail.text, id=run.message_id))
        except GuardViolation as exc:
            self.stopped = Blocked(None, exc)
            return [_Held("on_llm_error", (exc,), ids)], self.stopped
        text = str(answer.content)
        lead = "\n\n" if run.shown else ""
        items: list[_Held] = []
        if run.protocol:
            if run.text_block is None:
                index = run.blocks
                items.append(_Held("on_stream_event", ({"event": "content-block-start", "index": index,
                                                        "content": {"type": "text", "text": ""}},), ids))
                run.text_block = (index, "")
            index, before = run.text_block
            items += [_Held("on_stream_event", ({"event": "content-block-delta", "index": index,
                                                 "delta": {"type": "text-delta", "text": lead + text}},), ids),
                      _Held("on_stream_event", ({"event": "content-block-finish", "index": index,
                                                 "content": {"type": "text", "text": before + lead + text}},), ids),
                      _Held("on_stream_event", ({"event": "message-finish"},), ids)]
        elif run.out.chunks:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=lead + text, id=run.message_id))
            items.append(_Held("on_llm_new_token", (lead + text,), {**ids, "chunk": chunk}))
        items.append(_Held("on_llm_end", (LLMResult(generations=[[ChatGeneration(message=answer)]]),), ids))
        self.stopped = Blocked(answer)
        return items, self.stopped

    def verdicts(self, run: _Run) -> list[Verdict]:
        out = list(run.verdicts)
        run.verdicts.clear()
        return out


def _message(response: Any) -> BaseMessage | None:
    generations = getattr(response, "generations", None)
    if generations and generations[0] and isinstance(generations[0][0], ChatGeneration):
        return generations[0][0].message
    return None


# ---------------------------------------------------------------------- the gate's two faces


def _face(gate: ModelGate, inner: list[BaseCallbackHandler]) -> BaseCallbackHandler:
    """The handler LangChain calls: sync or async, streaming when a real handler streams (so the
    model streams exactly when it would have), protocol-streaming when one wants v3 events."""
    from langchain_core.tracers._streaming import _StreamingCallbackHandler, _V2StreamingCallbackHandler

    bases: tuple[type, ...] = (_AsyncGate if gate.is_async else _SyncGate,)
    if any(isinstance(h, _StreamingCallbackHandler) for h in inner):  # a protocol: the tap methods make one
        bases += (_Taps,)
    if any(isinstance(h, _V2StreamingCallbackHandler) for h in inner):
        bases += (_V2StreamingCallbackHandler,)
    cls = _CLASSES.get(bases)
    if cls is None:
        cls = _CLASSES[bases] = type("OmniGuardGate", bases, {})
    return cls(gate, inner)  # type: ignore[no-any-return]


_CLASSES: dict[tuple[type, ...], type] = {}


class _GateBase:
    raise_error = True
    run_inline = True

    def __init__(self, gate: ModelGate, inner: list[BaseCallbackHandler]) -> None:
        self.gate = gate
        self.inner = inner


class _Taps:
    """The streaming handlers' taps on a chain's streamed output (``astream_events``'
    ``on_chain_stream``), passed through: no model output flows there."""

    inner: list[BaseCallbackHandler]

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        for handler in self.inner:
            if hasattr(handler, "tap_output_iter"):
                output = handler.tap_output_iter(run_id, output)
        return output

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        for handler in self.inner:
            if hasattr(handler, "tap_output_aiter"):
                output = handler.tap_output_aiter(run_id, output)
        return output


class _SyncGate(_GateBase, BaseCallbackHandler):
    """The gate on a sync run: the rail runs on the core's background loop; callbacks are
    handed on in the model's thread."""

    def _send(self, item: _Held) -> None:
        handle_event(self.inner, item.event, _IGNORE.get(item.event), *item.args, **item.kwargs)

    def _wait(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, background_loop()).result()

    def _gated(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        held = self.gate.held(event, args, kwargs)
        if held is None:
            self._send(_Held(event, args, kwargs))
            return
        run, item = held
        released = self._wait(self.gate.feed(run, item, last=event == "on_llm_end"))
        for verdict in self.gate.verdicts(run):
            record("output", verdict)
        for out in released:
            self.gate.shown(run, out)
            self._send(out)
        if run.session.blocked is not None:
            items, signal = self.gate.ending(run)
            for out in items:
                self._send(out)
            raise signal

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.gate.start(kwargs["run_id"])
        self._send(_Held("on_chat_model_start", (serialized, messages), kwargs))

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._gated("on_llm_new_token", (token,), kwargs)

    def on_stream_event(self, event: Any, **kwargs: Any) -> None:
        self._gated("on_stream_event", (event,), kwargs)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self._gated("on_llm_end", (response,), kwargs)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        if self.gate.failed(kwargs["run_id"]):
            self._send(_Held("on_llm_error", (error,), kwargs))


class _AsyncGate(_GateBase, AsyncCallbackHandler):
    """The gate on an async run: the rail runs on the run's own loop."""

    async def _send(self, item: _Held) -> None:
        await ahandle_event(self.inner, item.event, _IGNORE.get(item.event), *item.args, **item.kwargs)

    async def _gated(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        held = self.gate.held(event, args, kwargs)
        if held is None:
            await self._send(_Held(event, args, kwargs))
            return
        run, item = held
        released = await self.gate.feed(run, item, last=event == "on_llm_end")
        self.gate.verdicts(run)  # recorded by the rail's judge in this task
        for out in released:
            self.gate.shown(run, out)
            await self._send(out)
        if run.session.blocked is not None:
            items, signal = self.gate.ending(run)
            for out in items:
                await self._send(out)
            raise signal

    async def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.gate.start(kwargs["run_id"])
        await self._send(_Held("on_chat_model_start", (serialized, messages), kwargs))

    async def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:  # type: ignore[override]
        await self._gated("on_llm_new_token", (token,), kwargs)

    async def on_stream_event(self, event: Any, **kwargs: Any) -> None:
        await self._gated("on_stream_event", (event,), kwargs)

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        await self._gated("on_llm_end", (response,), kwargs)

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        if self.gate.failed(kwargs["run_id"]):
            await self._send(_Held("on_llm_error", (error,), kwargs))


def _passing(name: str, ignore: str | None) -> tuple[Callable[..., None], Callable[..., Awaitable[None]]]:
    def sync(self: _SyncGate, *args: Any, **kwargs: Any) -> None:
        handle_event(self.inner, name, ignore, *args, **kwargs)

    async def asynchronous(self: _AsyncGate, *args: Any, **kwargs: Any) -> None:
        await ahandle_event(self.inner, name, ignore, *args, **kwargs)

    return sync, asynchronous


for _name, _ignore in _PASS:
    if _name == "on_chat_model_start":
        continue
    _sync, _async = _passing(_name, _ignore)
    setattr(_SyncGate, _name, _sync)
    setattr(_AsyncGate, _name, _async)


# ---------------------------------------------------------------------- the v3 tools channel


class ToolJudge(Protocol):
    """What the tools transformer needs of the middleware (its public methods)."""

    def tool_check(self, message: ToolMessage) -> Check | None: ...

    def judge_checks(self, checks: Sequence[Check]) -> list[Verdict]: ...

    async def ajudge_checks(self, checks: Sequence[Check]) -> list[Verdict]: ...

    def apply(self, check: Check, verdict: Verdict, target: BaseMessage) -> BaseMessage: ...


class ToolResultsTransformer(StreamTransformer):
    """The v3 ``tools`` channel, judged: output deltas are withheld, and each finished tool
    result is judged before anyone sees it (an unsafe one is replaced, or fails the run)."""

    before_builtins: ClassVar[bool] = True
    supports_sync: ClassVar[bool] = True
    required_stream_modes: ClassVar[tuple[str, ...]] = ("tools",)

    def __init__(self, scope: tuple[str, ...] = (), *, guard: ToolJudge) -> None:
        super().__init__(scope)
        self._guard = guard

    def init(self) -> dict[str, Any]:
        return {}

    def _plan(self, event: ProtocolEvent) -> tuple[dict[str, Any], Check] | None:
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
        check = self._guard.tool_check(output)
        return (data, check) if check is not None else None

    def process(self, event: ProtocolEvent) -> bool:
        planned = self._plan(event)
        if planned is not None:
            data, check = planned
            data["output"] = self._guard.apply(check, self._guard.judge_checks([check])[0], data["output"])
        return not _withheld(event)

    async def aprocess(self, event: ProtocolEvent) -> bool:
        planned = self._plan(event)
        if planned is not None:
            data, check = planned
            data["output"] = self._guard.apply(check, (await self._guard.ajudge_checks([check]))[0], data["output"])
        return not _withheld(event)


def _withheld(event: ProtocolEvent) -> bool:
    data = event["params"].get("data")
    return event["method"] == "tools" and isinstance(data, dict) and data.get("event") == "tool-output-delta"


def transformer_factory(guard: ToolJudge) -> Callable[[tuple[str, ...]], ToolResultsTransformer]:
    def factory(scope: tuple[str, ...]) -> ToolResultsTransformer:
        return ToolResultsTransformer(scope, guard=guard)

    return factory

