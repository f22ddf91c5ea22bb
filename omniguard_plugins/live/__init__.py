"""Live voice and video sessions: PCM windows, sampled camera frames, turn checks, and the
agent's outgoing text on the stream rail, each verdict with its time span in the session.
Framework-free; the pipecat and LiveKit doors only map their frames in and decisions out."""

from __future__ import annotations

from ._blocking import OnBlock, live_blocking
from ._frames import to_pil
from ._pcm import TARGET_RATE, PcmStream, Ring
from .errors import LiveInputError
from .session import LiveOutput, LiveSession, LiveSettings, LiveStats, LiveVerdict

__all__ = [
    "TARGET_RATE",
    "LiveInputError",
    "LiveOutput",
    "LiveSession",
    "LiveSettings",
    "LiveStats",
    "LiveVerdict",
    "OnBlock",
    "PcmStream",
    "Ring",
    "live_blocking",
    "to_pil",
]
