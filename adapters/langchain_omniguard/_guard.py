"""guard(runnable): an input rail and an output rail around any runnable, streaming kept."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, PrivateAttr, model_validator

from omniguard_plugins import OmniGuard, Verdict

from omniguard_plugins.streaming import WindowSchedule

from ._judging import Check, arecord, arun_checks, record, resolve_judge, run_checks
from ._stream import GuardRun, RailSettings, accumulate

__all__ = ["GuardedRunnable", "guard"]


def _check_sizes(every_chars: int, window_chars: int) -> None:
    WindowSchedule(window_chars, every_chars)  # raises ConfigError unless windows overlap


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
    window_chars: int = 600
    every_chars: int = 200
    exit_behavior: Literal["error", "end"] = "error"
    violation_message: str | None = None
    policy: Any = None
    mode: Literal["verdict", "critique", "score"] | None = None

    _judge: OmniGuard | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _sizes(self) -> GuardedRunnable:
        _check_sizes(self.every_chars, self.window_chars)
        return self

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return name or f"OmniGuard({self.bound.get_name()})" + (suffix or "")

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.bound.OutputType

    def _run(self, value: Any, *, streaming: bool) -> GuardRun:
        if self._judge is None:
            self._judge = resolve_judge(self.judge)
        settings = RailSettings(
            judge=self._judge, check_input=self.check_input, check_output=self.check_output,
            window_chars=self.window_chars, every_chars=self.every_chars, exit_behavior=self.exit_behavior,
            violation_message=self.violation_message, policy=self.policy, mode=self.mode,
            output_type=self.bound.OutputType,
        )
        return GuardRun(settings, value, streaming=streaming)

    # ----------------------------------------------------------------- the two loops

    def _judge_sync(self, check: Check, config: RunnableConfig) -> Verdict:
        verdict = run_checks(self._judge, [check])[0]  # type: ignore[arg-type]
        record(check.stage, verdict, config)
        return verdict

    async def _judge_async(self, check: Check, config: RunnableConfig) -> Verdict:
        verdict = (await arun_checks(self._judge, [check]))[0]  # type: ignore[arg-type]
        await arecord(check.stage, verdict, config)
        return verdict

    def _drive(self, run: GuardRun, source: Callable[[], Iterator[Any]], config: RunnableConfig) -> Iterator[Any]:
        if (check := run.start()) is not None:
            run.judged(check, self._judge_sync(check, config))
        if not run.done:
            chunks = source()
            try:
                for chunk in chunks:
                    if (check := run.push(chunk)) is not None:
                        run.judged(check, self._judge_sync(check, config))
                    yield from run.emit()
                    if run.done:
                        break
            finally:
                getattr(chunks, "close", lambda: None)()  # stop the model at once
        if not run.done and (check := run.finish()) is not None:
            run.judged(check, self._judge_sync(check, config))
        yield from run.emit()

    async def _adrive(
        self, run: GuardRun, source: Callable[[], AsyncIterator[Any]], config: RunnableConfig
    ) -> AsyncIterator[Any]:
        if (check := run.start()) is not None:
            run.judged(check, await self._judge_async(check, config))
        if not run.done:
            chunks = source()
            try:
                async for chunk in chunks:
                    if (check := run.push(chunk)) is not None:
                        run.judged(check, await self._judge_async(check, config))
                    for out in run.emit():
                        yield out
                    if run.done:
                        break
            finally:
                if hasattr(chunks, "aclose"):
                    await chunks.aclose()
        if not run.done and (check := run.finish()) is not None:
            run.judged(check, await self._judge_async(check, config))
        for out in run.emit():
            yield out

    # ----------------------------------------------------------------- Runnable API

    def _invoke(self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> Any:
        emitted = list(self._drive(self._run(value, streaming=False),
                                   lambda: iter([self.bound.invoke(value, config)]), config))
        return emitted[-1] if emitted else None

    async def _ainvoke(self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig) -> Any:
        async def one() -> AsyncIterator[Any]:
            yield await self.bound.ainvoke(value, config)

        emitted = [out async for out in self._adrive(self._run(value, streaming=False), one, config)]
        return emitted[-1] if emitted else None

    def _transform(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[Any]:
        value = _collect(list(inputs))
        yield from self._drive(self._run(value, streaming=True), lambda: self.bound.stream(value, config), config)

    async def _atransform(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> AsyncIterator[Any]:
        value = _collect([v async for v in inputs])
        async for out in self._adrive(self._run(value, streaming=True), lambda: self.bound.astream(value, config), config):
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
    window_chars: int = 600,
    every_chars: int = 200,
    exit_behavior: Literal["error", "end"] = "error",
    violation_message: str | None = None,
    policy: Any = None,
    mode: Literal["verdict", "critique", "score"] | None = None,
) -> GuardedRunnable:
    """Wrap ``runnable`` with an input rail and an output rail.

    The input is judged before ``runnable`` runs; its output after. ``stream``/``astream`` keep
    streaming: the last ``window_chars`` characters are judged every ``every_chars`` new ones,
    a chunk is only yielded once text covering it has passed, and the whole output is judged
    at the end. On an unsafe verdict ``exit_behavior="error"`` raises
    :class:`~omniguard_plugins.errors.GuardViolation`; ``"end"`` returns (or yields, and stops)
    ``violation_message`` in the output's shape. ``judge=None`` uses ``OmniGuard.shared()``.
    """
    _check_sizes(every_chars, window_chars)
    return GuardedRunnable(
        bound=runnable, judge=judge, check_input=check_input, check_output=check_output,
        window_chars=window_chars, every_chars=every_chars, exit_behavior=exit_behavior,
        violation_message=violation_message, policy=policy, mode=mode,
    )
