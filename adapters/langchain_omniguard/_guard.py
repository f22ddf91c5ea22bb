"""guard(runnable): an input rail and an output rail around any runnable, streaming kept."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, PrivateAttr, model_validator

from omniguard_plugins import OmniGuard
from omniguard_plugins.streaming import StreamSettings, amoderate, moderate

from ._judging import ajudge_and_record, judge_and_record, resolve_judge
from ._stream import GuardRun, RailSettings, accumulate

__all__ = ["GuardedRunnable", "guard"]


def _collect(values: list[Any]) -> Any:
    """A streamed input, whole (the input rail needs all of it before the runnable starts)."""
    return functools.reduce(accumulate, values, None)


class GuardedRunnable(RunnableSerializable[Any, Any]):
    """``bound`` with OmniGuard rails; build it with :func:`guard`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    judge: OmniGuard | None = None
    check_input: bool = True
    check_output: bool = True
    window_chars: int = StreamSettings.window_chars
    step_chars: int = StreamSettings.step_chars
    max_unjudged_chars: int = StreamSettings.max_unjudged_chars
    max_in_flight: int = StreamSettings.max_in_flight
    exit_behavior: Literal["error", "end"] = "error"
    violation_message: str | None = None
    policy: Any = None
    mode: Literal["verdict", "critique", "score"] | None = None

    _judge: OmniGuard | None = PrivateAttr(default=None)
    _stream_settings: StreamSettings | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _sizes(self) -> GuardedRunnable:
        self._stream_settings = StreamSettings(self.window_chars, self.step_chars, self.max_unjudged_chars,
                                               self.max_in_flight)  # raises ConfigError on bad sizes
        return self

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return name or f"OmniGuard({self.bound.get_name()})" + (suffix or "")

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.bound.OutputType

    def _run(self, value: Any, config: RunnableConfig, *, streaming: bool, is_async: bool) -> GuardRun:
        if self._judge is None:
            self._judge = resolve_judge(self.judge)
        settings = RailSettings(
            judge=self._judge, check_input=self.check_input, check_output=self.check_output,
            stream=self._stream_settings or StreamSettings(), exit_behavior=self.exit_behavior,
            violation_message=self.violation_message, policy=self.policy, mode=self.mode,
            output_type=self.bound.OutputType,
        )
        return GuardRun(settings, value, streaming, config, is_async)

    # ----------------------------------------------------------------- the two loops: input check, then the core rail

    def _drive(self, run: GuardRun, source: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        if (check := run.start()) is not None:
            verdict = judge_and_record(run.s.judge, [check], [run.config])[0]
            if (refusal := run.input_refusal(check, verdict)) is not None:
                yield from refusal
                return
        if not run.s.check_output:
            yield from source()
            return
        for out in moderate(source(), run.out.rail, run.out.judge_window, on_verdict=run.out.recorded):
            yield run.shown(out)
        yield from run.ending()

    async def _adrive(self, run: GuardRun, source: Callable[[], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        if (check := run.start()) is not None:
            verdict = (await ajudge_and_record(run.s.judge, [check], [run.config]))[0]
            if (refusal := run.input_refusal(check, verdict)) is not None:
                for out in refusal:
                    yield out
                return
        chunks = source() if not run.s.check_output else amoderate(source(), run.out.rail, run.out.judge_window)
        async for out in chunks:
            yield run.shown(out)
        for out in run.ending():
            yield out

    # ----------------------------------------------------------------- Runnable API

    def _invoke(self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> Any:
        run = self._run(value, config, streaming=False, is_async=False)
        emitted = list(self._drive(run, lambda: iter([self.bound.invoke(value, config)])))
        return emitted[-1] if emitted else None

    async def _ainvoke(self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig) -> Any:
        async def one() -> AsyncIterator[Any]:
            yield await self.bound.ainvoke(value, config)

        run = self._run(value, config, streaming=False, is_async=True)
        emitted = [out async for out in self._adrive(run, one)]
        return emitted[-1] if emitted else None

    def _transform(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[Any]:
        value = _collect(list(inputs))
        run = self._run(value, config, streaming=True, is_async=False)
        yield from self._drive(run, lambda: self.bound.stream(value, config))

    async def _atransform(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> AsyncIterator[Any]:
        value = _collect([v async for v in inputs])
        run = self._run(value, config, streaming=True, is_async=True)
        async for out in self._adrive(run, lambda: self.bound.astream(value, config)):
            yield out

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config)

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, self._transform, config)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for out in self._atransform_stream_with_config(input, self._atransform, config):
            yield out

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for out in self.atransform(one(), config):
            yield out


def guard(
    runnable: Runnable[Any, Any],
    *,
    judge: OmniGuard | None = None,
    check_input: bool = True,
    check_output: bool = True,
    window_chars: int = StreamSettings.window_chars,
    step_chars: int = StreamSettings.step_chars,
    max_unjudged_chars: int = StreamSettings.max_unjudged_chars,
    max_in_flight: int = StreamSettings.max_in_flight,
    exit_behavior: Literal["error", "end"] = "error",
    violation_message: str | None = None,
    policy: Any = None,
    mode: Literal["verdict", "critique", "score"] | None = None,
) -> GuardedRunnable:
    """Wrap ``runnable`` with an input rail and an output rail.

    The input is judged before ``runnable`` runs; its output after. ``stream``/``astream``/
    ``transform`` keep streaming through the core stream rail (:mod:`omniguard_plugins.streaming`):
    windows of ``window_chars`` every ``step_chars`` are judged while the model keeps
    streaming (at most ``max_in_flight`` at once), a chunk is yielded only once safe verdicts
    cover it (``max_unjudged_chars`` lets shown text run that far ahead), the whole output is
    judged at the end, and an unsafe verdict stops the model at once. Then
    ``exit_behavior="error"`` raises :class:`~omniguard_plugins.errors.GuardViolation`; ``"end"``
    returns (or yields, and stops) ``violation_message`` in the output's type (a ``str`` for a
    chain that produces strings). ``judge=None`` uses ``OmniGuard.shared()``.
    """
    # a ConfigError now, not a ValidationError
    StreamSettings(window_chars, step_chars, max_unjudged_chars, max_in_flight)
    return GuardedRunnable(
        bound=runnable, judge=judge, check_input=check_input, check_output=check_output,
        window_chars=window_chars, step_chars=step_chars, max_unjudged_chars=max_unjudged_chars,
        max_in_flight=max_in_flight, exit_behavior=exit_behavior, violation_message=violation_message,
        policy=policy, mode=mode,
    )
