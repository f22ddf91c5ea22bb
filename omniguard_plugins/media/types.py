"""What the decoders produce and the limits they hold to: the leaf of the media package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

__all__ = ["DecodedAudio", "DecodedImage", "DecodedMedia", "DecodedVideo", "MediaKey", "MediaLimits"]

#: one media item's identity, the same in every cache (results, tower outputs, encoded parts):
#: its kind, the SHA-256 of the bytes it came from, and the ``(start_s, end_s)`` span it covers
#: in that source (None: all of it), so two spans of one recording never share a cache entry
MediaKey = tuple[str, str, "tuple[float, float] | None"]


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

    @property
    def key(self) -> MediaKey:
        return ("image", self.sha256, None)


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

    @property
    def key(self) -> MediaKey:
        return ("audio", self.sha256, self.window)

    def span(self, start_s: float, end_s: float) -> DecodedAudio:
        """The samples from ``start_s`` to ``end_s`` of this item (times relative to it), as a
        window of the same source: its times are the source's, its key its own."""
        base = self.window[0] if self.window else 0.0
        a = max(0, int(round(start_s * self.sample_rate)))
        b = min(len(self.samples), max(a + 1, int(round(end_s * self.sample_rate))))
        return DecodedAudio(self.samples[a:b], self.sha256, self.sample_rate,
                            window=(base + a / self.sample_rate, base + b / self.sample_rate))


@dataclass(frozen=True, eq=False)
class DecodedVideo:
    """Frames as uint8 RGB arrays (T, H, W, 3), sampled at ``fps``."""

    frames: np.ndarray
    fps: float
    sha256: str
    #: (start_s, end_s) when this is a span of a longer clip (see :meth:`span`)
    window: tuple[float, float] | None = None
    kind: str = field(default="video", init=False)

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps if self.fps else 0.0

    @property
    def key(self) -> MediaKey:
        return ("video", self.sha256, self.window)

    def span(self, start_s: float, end_s: float) -> DecodedVideo:
        """The frames shown from ``start_s`` to ``end_s`` of this item, an even number of them
        (the vision tower groups frames in pairs), as a window of the same source."""
        import numpy as np

        base = self.window[0] if self.window else 0.0
        a = max(0, min(len(self.frames) - 1, int(start_s * self.fps + 1e-6)))
        b = min(len(self.frames), max(a + 1, int(np.ceil(end_s * self.fps - 1e-6))))
        frames = self.frames[a:b]
        if len(frames) % 2:
            frames = np.concatenate([frames, frames[-1:]])
        return DecodedVideo(frames, self.fps, self.sha256, window=(base + a / self.fps, base + b / self.fps))


DecodedMedia = Union[DecodedImage, DecodedAudio, DecodedVideo]
