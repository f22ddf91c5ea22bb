"""The live doors' block vocabulary: speak the refusal, or stay silent. One table for both
voice doors (pipecat, LiveKit), mapped onto the core's :class:`~omniguard_plugins.doors.Blocking`."""

from __future__ import annotations

from typing import Literal

from ..doors import Blocking
from ..errors import ConfigError

__all__ = ["OnBlock", "live_blocking"]

OnBlock = Literal["speak", "silent"]
_ACTIONS: dict[str, Literal["refuse", "drop"]] = {"speak": "refuse", "silent": "drop"}


def live_blocking(on_block: OnBlock = "speak", template: str | None = None) -> Blocking:
    """``"speak"``: the refusal (``template``, default the core's) is spoken in place of what was
    blocked; ``"silent"``: what was blocked is dropped and nothing is said."""
    if on_block not in _ACTIONS:
        raise ConfigError(f"on_block must be one of {', '.join(_ACTIONS)}, got {on_block!r}")
    return Blocking(_ACTIONS[on_block], template)
