"""Which frames of a clip (or an animation) are judged: shared by stills and video decoding."""

from __future__ import annotations

import math

import numpy as np

from .types import MediaLimits

__all__ = ["even_frames", "sample_times"]


def sample_times(duration: float, limits: MediaLimits) -> tuple[list[float], float]:
    """Frame times at ``video_fps``, spread evenly over the whole clip when that would pass
    ``max_video_frames`` (so a long video is judged end to end, more sparsely)."""
    step = max(1.0 / limits.video_fps, duration / max(1, limits.max_video_frames))
    count = max(1, min(limits.max_video_frames, math.ceil(duration / step - 1e-6)))
    return [i * step for i in range(count)], 1.0 / step


def even_frames(frames: list[np.ndarray]) -> np.ndarray:
    """Stack as (T, H, W, 3) uint8 with T even: Qwen2.5-Omni's vision tower groups 2 frames."""
    if len(frames) % 2:
        frames = [*frames, frames[-1]]
    return np.stack(frames).astype(np.uint8, copy=False)
