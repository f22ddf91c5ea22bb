"""``stream(rails, messages=...)``: a NeMo answer streamed through the core stream rail.

NeMo's own streaming output rails (``rails.output.streaming`` with ``LLMRails.stream_async``)
judge each chunk and show it as soon as that check passes: a chunk boundary inside an unsafe
sentence shows its first half before the chunk that completes it is judged, and no flag makes
NeMo hold text back for a look-ahead. So the shipped config leaves them off and this function
streams instead: NeMo runs the turn as ``generate_async`` does (input rail, main LLM, output
rail), the LLM's tokens go through the one ``StreamRail`` of every other door (overlapping
windows judged while the LLM streams, text released only once a safe window covered it *and*
the overlap after it, the whole answer judged at the end), and NeMo's output rail takes that
verdict. An unsafe input is answered with the config's refusal, as ``generate_async`` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

from nemoguardrails.streaming import StreamingHandler

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.doors import Ask, VerdictSummary, summarize
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.openai_messages import parts_from_openai
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate

from ._turn import _TURN, StreamTurn
from .names import INPUT_FLOW, JUDGE_PARAM, OUTPUT_FLOW

__all__ = ["STREAM_SETTINGS_KEY", "blocked_chunk", "stream"]

#: ``custom_data`` key of the shipped config.yml holding the stream rail's settings
STREAM_SETTINGS_KEY = "omniguard_stream"


async def stream(
    rails: Any,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    prompt: str | None = None,
    options: Any = None,
    state: Any = None,
    judge: OmniGuard | None = None,
    settings: StreamSettings | None = None,
    explain_unsafe: bool = True,
) -> AsyncIterator[str]:
    """Stream the answer of ``rails`` (an ``LLMRails`` with the OmniGuard rails) to ``messages``
    (or ``prompt``), releasing only what the core stream rail released.

    Yields text chunks as the LLM wrote them. A block ends the stream with one chunk in NeMo's
    streaming error shape (``{"error": {"code": "content_blocked", "param": <flow>, ...}}``,
    :func:`blocked_chunk`), after which nothing more comes. An unsafe *input* streams the
    config's refusal, as ``generate_async`` answers it (or, with ``enable_rails_exceptions``,
    the error chunk naming the input flow).

    ``settings`` default to ``custom_data.omniguard_stream`` of the config (the shipped one:
    windows of 600 characters every 200), else :class:`StreamSettings`. ``judge`` defaults to
    the one registered on ``rails`` (``register(rails, judge=...)``), else ``OmniGuard.shared()``.
    Colang 1 configs only; another output rail in the config would judge only the whole answer
    after it was shown, so such a config is refused (ConfigError): use ``generate_async``.
    """
    config = rails.config
    _refuse_unsupported(config)
    judge = judge or _registered_judge(rails) or OmniGuard.shared()
    rail: StreamRail[str] = StreamRail(settings or _config_settings(config))
    user = _last_user(messages, prompt)
    handler = StreamingHandler()
    turn = StreamTurn(handler)
    token = _TURN.set(turn)
    try:  # the turn's task copies the context here: its actions see ``turn``
        task = asyncio.ensure_future(rails.generate_async(prompt=prompt, messages=messages, options=options,
                                                          state=state, streaming_handler=handler))
    finally:
        _TURN.reset(token)
    task.add_done_callback(lambda _: _end(handler))  # a turn that fails before streaming ends it too

    async def window_judge(window: Window) -> Verdict:
        def conversation() -> Conversation:
            context = (Turn("user", parts_from_openai(user)),) if user is not None else ()
            return window.conversation(tuple(t for t in context if t.parts))

        return await judge.acheck(Ask(conversation=conversation, stage="output", explain=explain_unsafe))

    source = _chunks(handler, task)
    try:
        first = await anext(source, None)
        refused_input = turn.input_outcome is not None and turn.input_outcome.is_blocked
        if first is not None and refused_input:
            yield first  # the config's own refusal of the input: not model output
            async for rest in source:
                yield rest
        elif first is not None:
            async for released in amoderate(_prepend(first, source), rail, window_judge):
                yield released
        if not turn.answer.done():
            turn.answer.set_result(rail.blocked or _final(rail))
        if rail.blocked is not None:
            yield blocked_chunk(summarize(rail.blocked, "output"))
            return
        await task  # NeMo finishes the turn (its output rail takes the verdict above)
        refusal = turn.input_outcome
        if refusal is not None and refusal.is_blocked and config.enable_rails_exceptions and first is None:
            yield blocked_chunk(VerdictSummary.from_json(refusal.metadata["verdict"]))
    finally:
        if not turn.answer.done():
            turn.answer.cancel()
        if not task.done():
            task.cancel()  # stop the model at once
        await asyncio.gather(task, return_exceptions=True)
        await source.aclose()


def blocked_chunk(summary: VerdictSummary) -> str:
    """The last chunk of a blocked stream: NeMo's streaming error shape (what its server turns
    into an OpenAI error), naming the OmniGuard flow that blocked, with the verdict summary."""
    flow = INPUT_FLOW if summary.stage == "input" else OUTPUT_FLOW
    kind = "internal_error" if summary.error else "guardrails_violation"
    code = "rail_execution_failure" if summary.error else "content_blocked"
    return json.dumps({"error": {"message": summary.blocked_message(), "type": kind, "param": flow, "code": code,
                                 "omniguard": summary.to_json()}})


async def _chunks(handler: StreamingHandler, task: asyncio.Future[Any]) -> AsyncGenerator[str, None]:
    """The handler's text chunks until NeMo ends the stream. A turn that failed raises here:
    NeMo pushes its error payload and the end of the stream, then raises, in one step, so the
    payload (and any text held with it) is never released."""
    async for chunk in handler:
        text = chunk.get("text") if isinstance(chunk, Mapping) else chunk
        if isinstance(text, str) and text:
            yield text
    await asyncio.sleep(0)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def _end(handler: StreamingHandler) -> None:
    if not handler.streaming_finished_event.is_set():
        asyncio.ensure_future(handler.finish())


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for chunk in rest:
        yield chunk


def _final(rail: StreamRail[str]) -> Verdict | None:
    """The final check's verdict (the whole answer), if the rail made one."""
    for verdict in reversed(rail.verdicts):
        if verdict.details.get("stream_check") == "final":
            return verdict
    return None


def _last_user(messages: Sequence[Mapping[str, Any]] | None, prompt: str | None) -> Any:
    if prompt is not None:
        return prompt
    for message in reversed(messages or ()):
        if message.get("role") == "user":
            return message.get("content")
    return None


def _registered_judge(rails: Any) -> OmniGuard | None:
    params = getattr(getattr(rails, "runtime", None), "registered_action_params", {}) or {}
    judge = params.get(JUDGE_PARAM) or rails.config.custom_data.get(JUDGE_PARAM)
    return judge if isinstance(judge, OmniGuard) else None


def _config_settings(config: Any) -> StreamSettings:
    raw = (config.custom_data or {}).get(STREAM_SETTINGS_KEY)
    if raw is None:
        return StreamSettings()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"custom_data.{STREAM_SETTINGS_KEY} must be a mapping of StreamSettings fields")
    try:
        return StreamSettings(**raw)
    except TypeError as exc:
        raise ConfigError(f"custom_data.{STREAM_SETTINGS_KEY}: {exc}") from None


def _refuse_unsupported(config: Any) -> None:
    if config.colang_version != "1.0":
        raise ConfigError("nemoguardrails_omniguard.stream needs a Colang 1 config (RAILS_DIR): a Colang 2 "
                          "config declares its output rails in flows, where stream() cannot tell whether another "
                          "rail would judge the answer only after it was shown")
    others = [flow for flow in config.rails.output.flows if flow != OUTPUT_FLOW]
    if others:
        raise ConfigError(f"stream() shows text once the OmniGuard stream rail passed it, but the output rails "
                          f"{others} would judge only the whole answer after it was shown: use generate_async")
