"""Operations written once, as generators of steps, and the only two places sync and async differ.

A door's operation yields :class:`Judge` (checks to run: one :class:`~omniguard_plugins.doors.Ask`,
a list of them for one batched call, or None) and :class:`Call` (a call into the wrapped
LlamaIndex object, with its sync and async twin); :func:`drive` / :func:`adrive` run it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Union

from omniguard_plugins import OmniGuard
from omniguard_plugins.doors import Ask

__all__ = ["Call", "Judge", "Steps", "adrive", "drive"]


@dataclass(frozen=True)
class Judge:
    """Checks to run; the step's result is a Verdict, a list of them, or None."""

    asks: Ask | list[Ask] | None


@dataclass(frozen=True)
class Call:
    sync: Callable[..., Any]
    asyn: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Steps = Generator[Union[Judge, Call], Any, Any]


def drive(steps: Steps, judge: Callable[[], OmniGuard]) -> Any:
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Judge):
                asks = step.asks
                if not asks:
                    result = None
                else:
                    result = judge().check_many(asks) if isinstance(asks, list) else judge().check(asks)
            else:
                result = step.sync(*step.args, **step.kwargs)
    except StopIteration as done:
        return done.value


async def adrive(steps: Steps, judge: Callable[[], OmniGuard]) -> Any:
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Judge):
                asks = step.asks
                if not asks:
                    result = None
                elif isinstance(asks, list):
                    result = await judge().acheck_many(asks)
                else:
                    result = await judge().acheck(asks)
            else:
                result = await step.asyn(*step.args, **step.kwargs)
    except StopIteration as done:
        return done.value
