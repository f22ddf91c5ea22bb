"""voice_guard: OmniGuard on a live voice and camera chat (pipecat, local WebRTC, espeak-ng)."""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):  # the app pulls in pipecat and aiortc: only when asked for
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
