"""The live session's one error type."""

from __future__ import annotations

from ..errors import ContentError

__all__ = ["LiveInputError"]


class LiveInputError(ContentError):
    """Live input the session cannot use (a PCM format no microphone has, a camera frame whose
    bytes do not match its size, audio of a turn that no check covered). The message is one line
    saying what was wrong. Inside a check it becomes a verdict under ``on_error`` like any
    content error (a blocking one by default)."""

    kind = "live_input"
