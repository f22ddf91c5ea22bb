"""OmniGuardRunnable: a drop-in LCEL step that passes its input through or blocks it."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, PrivateAttr

from omniguard_plugins import OmniGuard, Policy, Verdict
from omniguard_plugins.content import Role
from omniguard_plugins.errors import GuardViolation

from ._convert import to_conversation
from ._judging import AskSettings, Check, ExitBehavior, ajudge_and_record, blocking, judge_and_record, resolve_judge
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

    @property
    def _asking(self) -> AskSettings:
        return AskSettings(self.policy, self.mode, blocking(self.exit_behavior, self.violation_message))

    def _checks(self, inputs: list[Any]) -> list[Check]:
        role: Role = "user" if self.direction == "input" else "assistant"
        asking = self._asking
        return [asking.check(self.direction, value, functools.partial(to_conversation, value, role=role))
                for value in inputs]

    def _decide(self, check: Check, verdict: Verdict) -> Any:
        """The one decision: the value, a refusal, the value with its content replaced, or the
        GuardViolation (returned: LangChain's batch raises the first returned exception)."""
        try:
            decision = self._asking.block.decide(verdict, check.stage, check.content)
        except GuardViolation as exc:
            return exc
        if decision.allowed:
            return check.content
        if decision.action == "refuse":
            return AIMessage(content=decision.text)
        return replace_content(check.content, decision.text or "", "user" if self.direction == "input" else "assistant")

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
