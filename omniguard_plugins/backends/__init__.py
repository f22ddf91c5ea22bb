"""Model backends behind the one seam :class:`~omniguard_plugins.backends.base.Backend`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Backend, GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from ..config import JudgeConfig

__all__ = ["Backend", "GenerationRequest", "GenerationResult", "load_backend"]


def load_backend(config: JudgeConfig) -> Backend:
    """Build the backend a config names. Imports heavy dependencies only here."""
    name = config.resolved_backend
    if name == "transformers":
        from .transformers import TransformersBackend

        return TransformersBackend.from_config(config)
    if name == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend.from_config(config)
    raise ConfigError(f"unknown backend {name!r}; use 'transformers' or 'openai'")
