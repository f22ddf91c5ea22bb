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

    from .content import MediaPart, Origin

__all__ = [
    "DecodedAudio", "DecodedImage", "DecodedMedia", "DecodedVideo", "MediaCache", "MediaLimits",
    "check_declared", "decode_part", "read_source", "sniff_base64_kind", "sniff_kind", "sniff_mime",
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
    #: a decoder (ffmpeg, PyAV) that runs longer than this is stopped and the part refused
    decode_timeout_s: float = 30.0
    #: accept file paths as sources; a server taking untrusted messages should turn this off
    allow_paths: bool = True
    #: URLs are fetched only when this is on (see :mod:`omniguard_plugins.fetch`)
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


# --------------------------------------------------------------------------- sources

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_B64_RUN = re.compile(r"[A-Za-z0-9+/=_-]")


def read_source(
    source: Any, limits: MediaLimits, *, mime_hint: str | None = None, origin: Origin = "local"
) -> tuple[bytes, str | None]:
    """Return (bytes, mime type hint) for any accepted source.

    Accepted: bytes-like, a file-like with ``read``, a ``data:`` URI, base64 text, http(s) URLs
    when ``limits.allow_urls``, and, from the app's own code only (``origin="local"``), a
    ``Path`` or path string. A str from a user or a wire format is read by what its field says
    (:data:`~omniguard_plugins.content.Origin`) and never touches the host's files, so no error
    can tell a client whether a path exists. A file-like is read from its current position and
    put back there, so the input and output rails can both read it.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = _read_filelike(source, limits.max_bytes + 1)
    elif isinstance(source, os.PathLike):
        if origin != "local":
            raise UnsupportedMedia("file paths are not accepted from messages; send the bytes (base64 or a data: URI)")
        data = _read_path(Path(source), limits)
    elif isinstance(source, str):
        data, mime_hint = _read_str(source, limits, mime_hint) if origin == "local" else \
            _read_untrusted_str(source, limits, mime_hint, origin)
    else:
        raise UnsupportedMedia(f"cannot read media from {type(source).__name__}")
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"{len(data)} bytes is over the {limits.max_bytes}-byte limit")
    if not data:
        raise CorruptMedia("empty (zero bytes)")
    return data, mime_hint


def _read_filelike(source: Any, size: int) -> bytes:
    pos = _tell(source)
    data = source.read(size)
    if pos is not None:
        source.seek(pos)
    if isinstance(data, str):
        raise UnsupportedMedia("file-like objects must be opened in binary mode")
    return bytes(data or b"")


def _tell(source: Any) -> int | None:
    try:
        return source.tell() if source.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _read_path(path: Path, limits: MediaLimits) -> bytes:
    if not limits.allow_paths:
        raise UnsupportedMedia("file paths are not accepted here; send the bytes (base64 or a data: URI)")
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


def _read_data_uri(s: str, mime_hint: str | None) -> tuple[bytes, str | None]:
    m = _DATA_URI.match(s)
    if not m:
        raise CorruptMedia("malformed data: URI")
    mime = m.group("mime") or mime_hint
    payload = m.group("data")
    if m.group("b64"):
        return _b64decode(payload), mime
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(payload), mime


def _read_url(s: str, limits: MediaLimits) -> bytes | None:
    """The bytes of an http(s) URL (fetched only when allowed), or None for no URL at all."""
    if s[:16].lower().startswith(("http://", "https://")):
        from .fetch import fetch_url

        return fetch_url(s, limits)
    if "://" in s[:12]:
        raise MediaFetchRefused(f"scheme not allowed: {s.split('://', 1)[0][:16]}")
    return None


def _read_untrusted_str(source: str, limits: MediaLimits, mime_hint: str | None, origin: str) -> tuple[bytes, str | None]:
    s = source.strip()
    if origin == "base64":
        return _b64decode(s), mime_hint
    if s[:5].lower() == "data:":
        return _read_data_uri(s, mime_hint)
    fetched = _read_url(s, limits)
    if fetched is not None:
        return fetched, mime_hint
    if origin == "url":
        raise UnsupportedMedia("a url must be a data: URI or an http(s) URL")
    return _b64decode(s), mime_hint  # "wire": base64 or nothing, never a path


def _read_str(source: str, limits: MediaLimits, mime_hint: str | None) -> tuple[bytes, str | None]:
    s = source.strip()
    if s.startswith("data:"):
        return _read_data_uri(s, mime_hint)
    fetched = _read_url(s, limits)
    if fetched is not None:
        return fetched, mime_hint
    if len(s) >= 16 and _B64_CHARS.match(s) and not (limits.allow_paths and len(s) < 1024 and Path(s).is_file()):
        return _b64decode(s), mime_hint
    if len(s) < 1024 and _looks_like_path(s):
        return _read_path(Path(s), limits), mime_hint
    raise CorruptMedia("invalid base64 (the text is not a file path, a data: URI or a URL either)")


def _looks_like_path(s: str) -> bool:
    if re.search(r"\.[A-Za-z0-9]{1,5}$", s) or "\\" in s:
        return True
    if len(s) >= 64 and len(_B64_RUN.findall(s)) * 10 >= len(s) * 9:
        return False  # almost all base64 characters: broken base64, not a path
    return "/" in s or (" " not in s and len(s) < 16)


def _b64decode(payload: str) -> bytes:
    payload = re.sub(r"\s+", "", payload)
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise CorruptMedia("invalid base64") from None


# --------------------------------------------------------------------------- sniffing

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
    (b"ID3", "audio/mpeg"), (b"fLaC", "audio/flac"), (b"OggS", "audio/ogg"), (b"\x1aE\xdf\xa3", "video/webm"),
)
_RIFF = {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}
#: old QuickTime files start with one of these atoms instead of ``ftyp``
_QT_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def sniff_mime(data: bytes) -> tuple[str | None, str | None]:
    """(kind, mime) from the leading magic bytes, or (None, None).

    Only the *leading* bytes count: a part is decoded as the one format they name, by that
    format's decoder alone, so a polyglot file cannot be read as a second thing.
    """
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF":
        mime = _RIFF.get(data[8:12])
    elif mime is None and data[4:8] == b"ftyp":
        brand = data[8:12]
        mime = ("audio/mp4" if brand in (b"M4A ", b"M4B ") else "image/avif" if brand in (b"avif", b"avis")
                else "image/heic" if brand in (b"heic", b"heix", b"mif1", b"msf1") else "video/mp4")
    elif mime is None and data[4:8] in _QT_ATOMS:
        mime = "video/quicktime"
    elif mime is None and len(data) > 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0:
        # the MPEG sync word: layer bits 00 mean AAC in ADTS, anything else MP3
        mime = "audio/aac" if (data[1] & 0xF6) == 0xF0 else "audio/mpeg"
    return (mime.split("/")[0], mime) if mime else (None, None)


def sniff_kind(source: Any) -> str | None:
    """The kind of a bytes / path / file-like source from its first bytes, without consuming it."""
    try:
        if isinstance(source, os.PathLike):
            with open(source, "rb") as fh:
                return sniff_mime(fh.read(64))[0]
        if hasattr(source, "read") and _tell(source) is None:
            return None  # cannot peek at a stream we cannot rewind
        return sniff_mime(_read_filelike(source, 64) if hasattr(source, "read") else
                          read_source(source, MediaLimits())[0][:64])[0]
    except (MediaError, OSError):
        return None


def sniff_base64_kind(text: str) -> str | None:
    """The media kind (image/audio/video) of long base64 text from its first decoded bytes, or
    None. Lets a converter refuse base64 media it would otherwise judge as prose."""
    head = text.strip()[:88]
    if len(head) < 64 or not _B64_CHARS.match(head) or any(c.isspace() for c in head):
        return None
    try:
        decoded = base64.urlsafe_b64decode(head) if ("-" in head or "_" in head) else base64.b64decode(head, validate=True)
    except (binascii.Error, ValueError):
        return None
    return sniff_mime(decoded)[0]


#: declared types that say nothing about the bytes, or name media containers outside image/audio/video
_NEUTRAL_MIME = {"application/octet-stream", "binary/octet-stream", "application/ogg", "application/mp4"}


def check_declared(kind: str, declared: str | None, sniffed_kind: str | None, sniffed_mime: str | None) -> None:
    """Refuse bytes whose magic contradicts the declared MIME type or the part's kind.

    Audio and video containers (mp4, webm, ogg) hold either, so only image vs audio/video is
    a contradiction; ``image/jpeg`` declared for PNG bytes is tolerated (clients get it wrong
    often, and we decode by the bytes, never by the label).
    """
    if declared:
        major = declared.split(";")[0].strip().lower()
        if major not in _NEUTRAL_MIME and major.split("/")[0] not in ("image", "audio", "video"):
            raise UnsupportedMedia(f"declared type {major} is not an image, audio or video type")
        if major.split("/")[0] in ("image", "audio", "video") and sniffed_kind:
            if (major.startswith("image/")) != (sniffed_kind == "image"):
                raise UnsupportedMedia(f"declared {major} but the bytes are {sniffed_mime}")
    if sniffed_kind and (kind == "image") != (sniffed_kind == "image"):
        if not (kind == "video" and sniffed_mime in ("image/gif", "image/webp", "image/png")):  # animations
            raise UnsupportedMedia(f"passed as {kind} but the bytes are {sniffed_mime}")


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

    An image gives one DecodedImage (an animated GIF/WebP a DecodedVideo); audio one
    DecodedAudio (full length; the judge windows it); a video a DecodedVideo plus, if it has
    sound, a DecodedAudio of its track. Raises a MediaError subclass on anything it cannot read.
    """
    from PIL import Image as PILImage

    from .images import decode_image_bytes, decode_pil

    if part.kind == "image" and isinstance(part.source, PILImage.Image):
        return [decode_pil(part.source, limits)]
    data, mime_hint = read_source(part.source, limits, mime_hint=part.mime_type, origin=part.origin)
    digest = hashlib.sha256(data).hexdigest()
    sniffed_kind, sniffed_mime = sniff_mime(data[:64])
    # before the cache: the same bytes under a contradicting label are refused every time
    check_declared(part.kind, mime_hint or part.mime_type, sniffed_kind, sniffed_mime)
    key = (part.kind, digest, limits)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    if part.kind == "image" or (part.kind == "video" and sniffed_kind == "image"):
        decoded: list[DecodedMedia] = decode_image_bytes(data, digest, limits)
        if part.kind == "video" and not isinstance(decoded[0], DecodedVideo):
            raise UnsupportedMedia("passed as video but the bytes are a still image")
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
