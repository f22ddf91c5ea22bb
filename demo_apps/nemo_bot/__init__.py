"""nemo_bot: a NeMo Guardrails bot on OmniGuard's rails (``python -m demo_apps.nemo_bot``)."""

from __future__ import annotations

from .bot import EchoLLM, NemoBot, make_llm

__all__ = ["EchoLLM", "NemoBot", "make_llm"]
