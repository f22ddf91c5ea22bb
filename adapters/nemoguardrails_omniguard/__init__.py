"""OmniGuard for NeMo Guardrails: rail actions and ready input/output rail configs.

    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails_omniguard import RAILS_DIR, register

    rails = LLMRails(RailsConfig.from_path(RAILS_DIR), llm=my_llm)
    register(rails, judge=my_judge)   # optional: the folder's actions.py is found by NeMo itself

``RAILS_DIR`` is a Colang 1 config (NeMo's default), ``RAILS_DIR_V2`` the same rails in
Colang 2. A config folder holds one Colang version's flows, hence two folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

from omniguard_plugins import OmniGuard

from .actions import omniguard_check_input, omniguard_check_output, outcome_from_verdict
from .names import (
    INPUT_ACTION,
    INPUT_EXCEPTION,
    INPUT_FLOW,
    JUDGE_PARAM,
    OUTPUT_ACTION,
    OUTPUT_EXCEPTION,
    OUTPUT_FLOW,
    REFUSAL,
)

__all__ = [
    "INPUT_ACTION",
    "INPUT_EXCEPTION",
    "INPUT_FLOW",
    "JUDGE_PARAM",
    "OUTPUT_ACTION",
    "OUTPUT_EXCEPTION",
    "OUTPUT_FLOW",
    "RAILS_DIR",
    "RAILS_DIR_V2",
    "REFUSAL",
    "omniguard_check_input",
    "omniguard_check_output",
    "outcome_from_verdict",
    "register",
]

_HERE = Path(__file__).resolve().parent
#: the shipped Colang 1 config folder (``RailsConfig.from_path`` wants a str)
RAILS_DIR: str = str(_HERE / "rails")
#: the shipped Colang 2 config folder
RAILS_DIR_V2: str = str(_HERE / "rails_v2")


class _ActionHost(Protocol):
    """``LLMRails`` or the ``Guardrails`` facade (when it runs LLMRails)."""

    def register_action(self, action: Any, name: str | None = None) -> Any: ...

    def register_action_param(self, name: str, value: Any) -> Any: ...


R = TypeVar("R", bound=_ActionHost)


def register(rails: R, judge: OmniGuard | None = None) -> R:
    """Register the OmniGuard actions on ``rails`` and, if given, the judge they use
    (else ``OmniGuard.shared()`` on first check). Returns ``rails`` for chaining.

    Needed when a config lists the flows without shipping our ``actions.py`` (flows copied
    into your own folder, or a config built in code); harmless otherwise.
    """
    rails.register_action(omniguard_check_input, INPUT_ACTION)
    rails.register_action(omniguard_check_output, OUTPUT_ACTION)
    if judge is not None:
        rails.register_action_param(JUDGE_PARAM, judge)
        config = getattr(rails, "config", None)  # streaming output rails get no registered parameters
        if config is not None:
            config.custom_data[JUDGE_PARAM] = judge
    return rails
