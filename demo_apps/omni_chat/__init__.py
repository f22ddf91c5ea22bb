"""omni_chat: a multimodal web chat guarded by OmniGuard (``python -m demo_apps.omni_chat``)."""

from __future__ import annotations

from .agent import Agent, EchoChatModel, make_agent
from .app import create_app, load_judge
from .settings import ChatSettings, JudgeViews

__all__ = ["Agent", "ChatSettings", "EchoChatModel", "JudgeViews", "create_app", "load_judge", "make_agent"]
