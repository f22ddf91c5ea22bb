"""Decode and normalise media parts, with hard limits and typed errors.

Every part is read once: decoded media are cached by the SHA-256 of their bytes plus the
limits in force, so the input and output rails of one conversation (or one image in many turns)
decode it once. Anything we cannot read raises a :class:`~omniguard_plugins.errors.MediaError`
subclass with a one-line reason; the judge turns that into a blocking verdict by default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .errors import CorruptMedia, MediaError, MediaFetchRefused, MediaTooLarge, UnsupportedMedia

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

    from .content import MediaPart

__all__ = [
    "DecodedAudio",
    "DecodedImage",
    "DecodedMedia",
    "DecodedVideo",
    "MediaCache",
    "MediaLimits",
    "decode_part",
    "read_source",
    "sniff_kind",
]


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
    allow_urls: bool = False
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


DecodedMedia = Union[DecodedImage, DecodedAudio, DecodedVideo]


# --------------------------------------------------------------------------- sources

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


def read_source(source: Any, limits: MediaLimits, *, mime_hint: str | None = None) -> tuple[bytes, str | None]:
    """Return (bytes, mime type hint) for any accepted source.

    Accepted: bytes-like, a file-like with ``read``, a ``Path`` or path string, a ``data:``
    URI, base64 text, and http(s) URLs when ``limits.allow_urls``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(limits.max_bytes + 1)
        if isinstance(data, str):
            raise UnsupportedMedia("file-like objects must be opened in binary mode")
    elif isinstance(source, os.PathLike):
        data = _read_path(Path(source), limits)
    elif isinstance(source, str):
        data, mime_hint = _read_str(source, limits, mime_hint)
    else:
        raise UnsupportedMedia(f"cannot read media from {type(source).__name__}")
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"{len(data)} bytes is over the {limits.max_bytes}-byte limit")
    if not data:
        raise CorruptMedia("empty (zero bytes)")
    return data, mime_hint


def _read_path(path: Path, limits: MediaLimits) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnsupportedMedia(f"file not found: {path}") from None
    except OSError as exc:
        raise UnsupportedMedia(f"cannot read {path}: {exc.strerror}") from None
    if not path.is_file():
        raise UnsupportedMedia(f"not a regular file: {path}")
    if size > limits.max_bytes:
        raise MediaTooLarge(f"{path.name} is {size} bytes, over the {limits.max_bytes}-byte limit")
    return path.read_bytes()


def _read_str(source: str, limits: MediaLimits, mime_hint: str | None) -> tuple[bytes, str | None]:
    s = source.strip()
    if s.startswith("data:"):
        m = _DATA_URI.match(s)
        if not m:
            raise CorruptMedia("malformed data: URI")
        mime = m.group("mime") or mime_hint
        payload = m.group("data")
        if m.group("b64"):
            return _b64decode(payload), mime
        from urllib.parse import unquote_to_bytes

        return unquote_to_bytes(payload), mime
    lowered = s[:16].lower()
    if lowered.startswith(("http://", "https://")):
        from .fetch import fetch_url

        return fetch_url(s, limits), mime_hint
    if "://" in s[:12]:
        raise MediaFetchRefused(f"scheme not allowed: {s.split('://', 1)[0]}")
    if len(s) < 1024 and ("/" in s or "\\" in s or "." in s[-6:]) and Path(s).exists():
        return _read_path(Path(s), limits), mime_hint
    if len(s) >= 16 and _B64_CHARS.match(s):
        return _b64decode(s), mime_hint
    if len(s) < 1024:
        raise UnsupportedMedia(f"file not found: {s}")
    raise CorruptMedia("text is neither a path, a data: URI nor valid base64")


def _b64decode(payload: str) -> bytes:
    payload = re.sub(r"\s+", "", payload)
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise CorruptMedia("invalid base64") from None


# --------------------------------------------------------------------------- sniffing

_SIGNATURES: list[tuple[bytes, int, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image", "image/png"),
    (b"\xff\xd8\xff", 0, "image", "image/jpeg"),
    (b"GIF87a", 0, "image", "image/gif"),
    (b"GIF89a", 0, "image", "image/gif"),
    (b"BM", 0, "image", "image/bmp"),
    (b"II*\x00", 0, "image", "image/tiff"),
    (b"MM\x00*", 0, "image", "image/tiff"),
    (b"ID3", 0, "audio", "audio/mpeg"),
    (b"fLaC", 0, "audio", "audio/flac"),
    (b"OggS", 0, "audio", "audio/ogg"),
    (b"\x1aE\xdf\xa3", 0, "video", "video/webm"),
]


def sniff_mime(data: bytes) -> tuple[str | None, str | None]:
    """(kind, mime) from magic bytes, or (None, None)."""
    for sig, off, kind, mime in _SIGNATURES:
        if data[off : off + len(sig)] == sig:
            return kind, mime
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image", "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio", "audio/mp4"
        if brand in (b"heic", b"heix", b"avif", b"mif1"):
            return "image", "image/" + ("avif" if brand == b"avif" else "heic")
        return "video", "video/mp4"
    if len(data) > 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0:
        return "audio", "audio/mpeg"
    return None, None


def sniff_kind(source: Any) -> str | None:
    try:
        data, _ = read_source(source, MediaLimits())
    except MediaError:
        return None
    return sniff_mime(data[:64])[0]


# --------------------------------------------------------------------------- cache


class MediaCache:
    """A small thread-safe LRU of decoded media, keyed by content hash and limits."""

    def __init__(self, max_items: int = 256) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[Any, ...], list[DecodedMedia]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> list[DecodedMedia] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def put(self, key: tuple[Any, ...], value: list[DecodedMedia]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


# --------------------------------------------------------------------------- decoding


def decode_part(part: MediaPart, limits: MediaLimits, cache: MediaCache | None = None) -> list[DecodedMedia]:
    """Decode one part into what the backend consumes.

    An image gives one DecodedImage; audio one DecodedAudio (full length; the judge windows
    it); a video a DecodedVideo plus, if it has sound, a DecodedAudio of its track.
    Raises a MediaError subclass on anything it cannot read.
    """
    if part.kind == "image" and _is_pil(part.source):
        return [_decode_pil(part.source, limits, cache)]
    data, mime_hint = read_source(part.source, limits, mime_hint=part.mime_type)
    digest = hashlib.sha256(data).hexdigest()
    key = (part.kind, digest, limits)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    sniffed_kind, sniffed_mime = sniff_mime(data[:64])
    declared = mime_hint or part.mime_type
    if declared and sniffed_kind and declared.split("/")[0] in ("image", "audio", "video"):
        if declared.split("/")[0] != sniffed_kind and not (declared.startswith("video") and sniffed_kind == "audio"):
            raise UnsupportedMedia(f"declared {declared} but the bytes are {sniffed_mime}")
    if part.kind == "image":
        decoded: list[DecodedMedia] = decode_image_bytes(data, digest, limits)
    elif part.kind == "audio":
        from .av import decode_audio_bytes

        decoded = [decode_audio_bytes(data, digest, limits)]
    elif part.kind == "video":
        from .av import decode_video_bytes

        decoded = decode_video_bytes(data, digest, limits)
    else:  # pragma: no cover - content.py only makes the three kinds
        raise UnsupportedMedia(f"unknown media kind {part.kind!r}")
    if cache is not None:
        cache.put(key, decoded)
    return decoded


def _is_pil(value: Any) -> bool:
    from PIL import Image as PILImage

    return isinstance(value, PILImage.Image)


def _decode_pil(img: PILImage.Image, limits: MediaLimits, cache: MediaCache | None) -> DecodedImage:
    if img.width * img.height > limits.max_image_pixels:
        raise MediaTooLarge(f"{img.width}x{img.height} is over the {limits.max_image_pixels}-pixel limit")
    rgb = _to_rgb(img)
    digest = hashlib.sha256(rgb.tobytes() + f"{rgb.size}".encode()).hexdigest()
    return DecodedImage(_fit(rgb, limits.image_pixel_budget), digest)


def decode_image_bytes(data: bytes, digest: str, limits: MediaLimits) -> list[DecodedMedia]:
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            fmt = probe.format
            n_frames = getattr(probe, "n_frames", 1)
    except UnidentifiedImageError:
        raise CorruptMedia("not a readable image") from None
    except PILImage.DecompressionBombError:
        raise MediaTooLarge("image header claims too many pixels") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptMedia(f"image does not decode ({_first_line(exc)})") from None
    # the header's size is checked before a single pixel is decoded
    if width * height > limits.max_image_pixels:
        raise MediaTooLarge(f"{width}x{height} is over the {limits.max_image_pixels}-pixel limit")
    if n_frames > 1 and fmt in ("GIF", "WEBP", "PNG"):
        from .av import animated_image_to_video

        return [animated_image_to_video(data, digest, limits)]
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
    except PILImage.DecompressionBombError:
        raise MediaTooLarge("image header claims too many pixels") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptMedia(f"image does not decode ({_first_line(exc)})") from None
    return [DecodedImage(_fit(rgb, limits.image_pixel_budget), digest)]


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    from PIL import Image as PILImage

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        img = PILImage.fromarray((arr / hi * 255.0).clip(0, 255).astype("uint8"), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = PILImage.new("RGBA", img.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def _fit(img: PILImage.Image, budget: int) -> PILImage.Image:
    w, h = img.size
    if w * h <= budget:
        return img
    scale = (budget / (w * h)) ** 0.5
    from PIL import Image as PILImage

    return img.resize((max(1, int(w * scale)), max(1, int(h * scale))), PILImage.Resampling.BICUBIC)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
