"""OmniGuardRunnable: a drop-in LCEL step that passes its input through or blocks it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, PrivateAttr

from omniguard_plugins import OmniGuard, Policy, Verdict

from ._convert import to_conversation
from ._judging import (
    Check,
    ExitBehavior,
    ajudge_and_record,
    format_violation,
    judge_and_record,
    make_check,
    resolve_judge,
    violation,
)
from ._shapes import replace_content

__all__ = ["OmniGuardRunnable"]


class OmniGuardRunnable(RunnableSerializable[Any, Any]):
    """Judge the value flowing through a chain; return it unchanged when safe.

    ``direction="input"`` reads the value as the user's turn (put it before the model),
    ``"output"`` as the assistant's (put it after). On an unsafe verdict ``exit_behavior``
    decides: ``"error"`` raises :class:`~omniguard_plugins.errors.GuardViolation`, ``"end"``
    returns an ``AIMessage`` with ``violation_message``, ``"replace"`` returns the value with
    its content replaced by that message. ``batch``/``abatch`` judge every input in one
    ``check_many``. Each verdict is sent to callbacks as the custom event ``omniguard_verdict``.

    Example::

        chain = prompt | OmniGuardRunnable(direction="input") | llm
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    judge: OmniGuard | None = None
    """The judge; ``None`` uses ``OmniGuard.shared()``, resolved at the first check."""
    direction: Literal["input", "output"] = "input"
    exit_behavior: ExitBehavior = "error"
    violation_message: str | None = None
    """Refusal template with ``{categories}`` and ``{critique}``."""
    policy: Policy | Mapping[str, Any] | None = None
    mode: Literal["verdict", "critique", "score"] | None = None

    _judge: OmniGuard | None = PrivateAttr(default=None)

    @property
    def omniguard(self) -> OmniGuard:
        if self._judge is None:
            self._judge = resolve_judge(self.judge)
        return self._judge

    # ----------------------------------------------------------------- one code path

    def _checks(self, inputs: list[Any]) -> list[Check]:
        role = "user" if self.direction == "input" else "assistant"
        return [
            make_check(self.direction, value, lambda v=value: to_conversation(v, role=role),
                    direction=self.direction, policy=self.policy, mode=self.mode,
                    template=self.violation_message if self.exit_behavior != "error" else None)
            for value in inputs
        ]

    def _decide(self, check: Check, verdict: Verdict) -> Any:
        if verdict.safe:
            return check.content
        if self.exit_behavior == "error":
            return violation(check, verdict)
        message = format_violation(self.violation_message, verdict)
        if self.exit_behavior == "end":
            return AIMessage(content=message)
        return replace_content(check.content, message, "user" if self.direction == "input" else "assistant")

    def _batch(
        self, inputs: list[Any], run_manager: list[CallbackManagerForChainRun], config: list[RunnableConfig]
    ) -> list[Any]:
        checks = self._checks(inputs)
        verdicts = judge_and_record(self.omniguard, checks, config)
        return [self._decide(c, v) for c, v in zip(checks, verdicts)]

    async def _abatch(
        self, inputs: list[Any], run_manager: list[AsyncCallbackManagerForChainRun], config: list[RunnableConfig]
    ) -> list[Any]:
        checks = self._checks(inputs)
        verdicts = await ajudge_and_record(self.omniguard, checks, config)
        return [self._decide(c, v) for c, v in zip(checks, verdicts)]

    # ----------------------------------------------------------------- Runnable API

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        return self._batch_with_config(self._batch, inputs, config, return_exceptions=return_exceptions)

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions
        )
