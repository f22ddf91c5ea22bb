"""OmniGuard for NeMo Guardrails: rail actions, ready rail configs and a guarded stream.

    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails_omniguard import RAILS_DIR, register, stream

    rails = LLMRails(RailsConfig.from_path(RAILS_DIR), llm=my_llm)  # an LLMModel (or LangChainLLMAdapter(chat))
    register(rails, judge=my_judge)   # optional: the folder's actions.py is found by NeMo itself
    rails.generate(messages=[...])
    async for chunk in stream(rails, messages=[...]):  # not rails.stream_async: see _stream.py
        ...

``RAILS_DIR`` is a Colang 1 config (NeMo's default), ``RAILS_DIR_V2`` the same input and output
rails in Colang 2. A config folder holds one Colang version's flows, hence two folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

from omniguard_plugins import OmniGuard

from . import names
from ._stream import STREAM_SETTINGS_KEY, blocked_chunk, stream
from .actions import (
    omniguard_check_input,
    omniguard_check_output,
    omniguard_check_tool_input,
    omniguard_check_tool_output,
    omniguard_passed_tool_calls,
    outcome_from_verdict,
)
from .names import *  # noqa: F403 - every name the shipped .co files and config.yml use is public

__all__ = [
    "RAILS_DIR",
    "RAILS_DIR_V2",
    "STREAM_SETTINGS_KEY",
    "blocked_chunk",
    "omniguard_check_input",
    "omniguard_check_output",
    "omniguard_check_tool_input",
    "omniguard_check_tool_output",
    "omniguard_passed_tool_calls",
    "outcome_from_verdict",
    "register",
    "stream",
]
__all__ += names.__all__
__all__.sort(key=lambda name: (not name.isupper(), name))  # constants first (a test pins the list)

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
    """Register the four OmniGuard actions on ``rails`` and, if given, the judge they (and
    :func:`stream`) use, else ``OmniGuard.shared()`` on first check. Returns ``rails``.

    Needed when a config lists the flows without shipping our ``actions.py`` (flows copied
    into your own folder, or a config built in code); harmless otherwise.
    """
    rails.register_action(omniguard_check_input, names.INPUT_ACTION)
    rails.register_action(omniguard_check_output, names.OUTPUT_ACTION)
    rails.register_action(omniguard_check_tool_input, names.TOOL_INPUT_ACTION)
    rails.register_action(omniguard_check_tool_output, names.TOOL_OUTPUT_ACTION)
    rails.register_action(omniguard_passed_tool_calls, names.TOOL_PASSED_ACTION)
    if judge is not None:
        rails.register_action_param(names.JUDGE_PARAM, judge)
        config = getattr(rails, "config", None)  # NeMo's streaming output rails get no registered parameters
        if config is not None:
            config.custom_data[names.JUDGE_PARAM] = judge
    return rails
