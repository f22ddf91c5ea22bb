"""The live session's settings, counters and verdict events (what a door configures and hears)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..doors import summarize
from ..errors import ConfigError
from ..rails import Stage
from ..streaming import StreamSettings

if TYPE_CHECKING:
    from ..verdict import Verdict

__all__ = ["CheckKind", "LiveSettings", "LiveStats", "LiveVerdict"]

CheckKind = Literal["turn", "audio_window", "frame", "output"]


@dataclass(frozen=True)
class LiveSettings:
    """How a live session is judged. Seconds throughout.

    ``window_s`` / ``step_s``: rolling audio windows while the user speaks (0 < step <= window).
    ``max_turn_s``: audio a turn keeps (memory bound); older audio must have been judged by a
    window. ``frame_interval_s``: one camera frame judged per interval, the rest dropped.
    ``turn_frames``: latest sampled frames judged with the turn. ``max_waiting_windows`` /
    ``max_waiting_frames``: checks that may wait for the judge per session before the oldest is
    shed. ``speculative``: the turn goes on to the LLM while it is judged; the LLM's output is
    held until that verdict is in (off: an unsafe turn never reaches the LLM). ``stream``: the
    outgoing text rail's settings; short windows (100 characters, one every 50) so speech starts
    after about 100 judged characters, not after a chat-sized window.
    """

    window_s: float = 3.0
    step_s: float = 1.0
    max_turn_s: float = 30.0
    frame_interval_s: float = 1.0
    turn_frames: int = 1
    max_waiting_windows: int = 2
    max_waiting_frames: int = 2
    speculative: bool = False
    stream: StreamSettings = field(default_factory=lambda: StreamSettings(window_chars=100, step_chars=50))

    def __post_init__(self) -> None:
        if not 0 < self.step_s <= self.window_s:
            raise ConfigError(f"need 0 < step_s <= window_s, got step_s={self.step_s}, window_s={self.window_s}")
        if self.max_turn_s < self.window_s:
            raise ConfigError(f"max_turn_s ({self.max_turn_s}) must be at least window_s ({self.window_s})")
        if self.frame_interval_s < 0:
            raise ConfigError(f"frame_interval_s must be >= 0, got {self.frame_interval_s}")
        for name in ("turn_frames", "max_waiting_windows", "max_waiting_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "turn_frames" else 1):
                raise ConfigError(f"{name} must be an int >= {0 if name == 'turn_frames' else 1}, got {value!r}")


@dataclass
class LiveStats:
    """What a session took in and what it dropped (never silently)."""

    audio_chunks: int = 0
    audio_seconds: float = 0.0
    empty_chunks: int = 0
    bad_chunks: int = 0
    format_changes: int = 0
    turns: int = 0
    turns_blocked: int = 0
    #: seconds of a turn's audio beyond ``max_turn_s``, no longer held (judged by windows)
    turn_audio_trimmed_s: float = 0.0
    windows_judged: int = 0
    windows_shed: int = 0
    frames_seen: int = 0
    frames_judged: int = 0
    #: frames between samples (never judged, never passed on)
    frames_skipped: int = 0
    frames_shed: int = 0
    frames_corrupt: int = 0
    outputs_blocked: int = 0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["audio_seconds"] = round(self.audio_seconds, 3)
        out["turn_audio_trimmed_s"] = round(self.turn_audio_trimmed_s, 3)
        return out


@dataclass(frozen=True)
class LiveVerdict:
    """One verdict of a live session: which check, the turn it belongs to, and its span in the
    session (``seconds``: start, end)."""

    check: CheckKind
    verdict: Verdict
    seconds: tuple[float, float]
    turn: int
    stage: Stage = "input"

    @property
    def safe(self) -> bool:
        return self.verdict.safe

    def to_json(self) -> dict[str, Any]:
        """The verdict summary every door sends, plus ``check``, ``turn`` and ``session_seconds``."""
        return {**summarize(self.verdict, self.stage).to_json(), "check": self.check, "turn": self.turn,
                "session_seconds": [round(self.seconds[0], 3), round(self.seconds[1], 3)]}
