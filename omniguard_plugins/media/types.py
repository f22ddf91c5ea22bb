"""What the decoders produce and the limits they hold to: the leaf of the media package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

__all__ = ["DecodedAudio", "DecodedImage", "DecodedMedia", "DecodedVideo", "MediaLimits"]


@dataclass(frozen=True)
class MediaLimits:
    """Hard limits for every decoder. Defaults suit a guard on chat traffic."""

    max_bytes: int = 64 * 1024 * 1024
    #: refuse images whose header claims more pixels than this, before decoding them
    max_image_pixels: int = 40_000_000
    #: images are downscaled to at most this many pixels before they reach the processor
    image_pixel_budget: int = 1024 * 1024
    #: audio longer than this is judged in windows of audio_window_s
    audio_window_s: float = 30.0
    #: audio (or a video's sound) longer than this is refused
    max_audio_s: float = 20 * 60.0
    video_fps: float = 2.0
    max_video_frames: int = 64
    max_video_s: float = 10 * 60.0
    video_pixel_budget: int = 448 * 448
    #: a decoder (ffmpeg, PyAV) that runs longer than this is stopped and the part refused
    decode_timeout_s: float = 30.0
    #: accept file paths as sources; a server taking untrusted messages should turn this off
    allow_paths: bool = True
    #: URLs are fetched only when this is on (see :mod:`omniguard_plugins.media.fetch`)
    allow_urls: bool = False
    #: when non-empty, the only hosts a URL may name (``"*.example.com"`` for subdomains);
    #: naming a host here also allows it to resolve to a private address
    url_allowlist: tuple[str, ...] = ()
    url_timeout_s: float = 10.0


@dataclass(frozen=True, eq=False)
class DecodedImage:
    image: PILImage.Image
    sha256: str
    kind: str = field(default="image", init=False)


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    """16 kHz mono float32 in [-1, 1]."""

    samples: np.ndarray
    sha256: str
    sample_rate: int = 16_000
    #: (start_s, end_s) when this is one window of a longer recording
    window: tuple[float, float] | None = None
    kind: str = field(default="audio", init=False)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, eq=False)
class DecodedVideo:
    """Frames as uint8 RGB arrays (T, H, W, 3), sampled at ``fps``."""

    frames: np.ndarray
    fps: float
    sha256: str
    kind: str = field(default="video", init=False)

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps if self.fps else 0.0


DecodedMedia = Union[DecodedImage, DecodedAudio, DecodedVideo]
