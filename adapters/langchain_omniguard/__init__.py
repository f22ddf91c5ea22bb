"""OmniGuard for LangChain: an LCEL step, a chain guard that moderates streams, agent middleware.

    from langchain_omniguard import OmniGuardRunnable, guard, OmniGuardMiddleware, GuardViolation

    safe_chain = guard(prompt | llm | parser)                 # input rail + output rail
    check_in = OmniGuardRunnable(direction="input")           # passes input through or blocks
    agent = create_agent(model, tools, middleware=[OmniGuardMiddleware(exit_behavior="end")])

Every component uses ``OmniGuard.shared()`` unless given ``judge=``, loaded at the first check.
``OmniGuardMiddleware`` needs the ``langchain`` package (``create_agent``); the rest needs only
``langchain-core``, so it is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omniguard_plugins.errors import GuardViolation

from ._convert import to_conversation
from ._guard import GuardedRunnable, guard
from ._judging import VERDICT_EVENT
from .runnable import OmniGuardRunnable

if TYPE_CHECKING:
    from .middleware import OmniGuardMiddleware

__all__ = [
    "VERDICT_EVENT",
    "GuardViolation",
    "GuardedRunnable",
    "OmniGuardMiddleware",
    "OmniGuardRunnable",
    "guard",
    "to_conversation",
]


def __getattr__(name: str) -> Any:
    if name == "OmniGuardMiddleware":
        from .middleware import OmniGuardMiddleware

        return OmniGuardMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
