"""Decode and normalise media parts, with hard limits and typed errors.

Every part is read once: decoded media are cached by the SHA-256 of their bytes plus the
limits in force, so the input and output rails of one conversation (or one image in many turns)
decode it once. Anything we cannot read raises a :class:`~omniguard_plugins.errors.MediaError`
subclass with a one-line reason; the judge turns that into a blocking verdict by default.

The package reads top-down, every import pointing down: :mod:`.types` (limits, decoded
types) <- :mod:`.sniff` (magic bytes) <- :mod:`.frames` (frame sampling) <- :mod:`.images`
(stills and animations) <- :mod:`.audio_video` (ffmpeg, PyAV); :mod:`.fetch` (URLs, off by
default) <- :mod:`.sources` (where bytes come from); and this module on top:
:func:`decode_part` and :class:`MediaCache`. :mod:`.pcm` holds the one WAV writer.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .._lru import LRU
from ..errors import UnsupportedMedia
from .pcm import wav_bytes
from .sniff import check_declared, sniff_base64_kind, sniff_mime
from .sources import read_source, sniff_kind
from .types import DecodedAudio, DecodedImage, DecodedMedia, DecodedVideo, MediaKey, MediaLimits

if TYPE_CHECKING:
    from ..content import MediaPart

__all__ = [
    "DecodedAudio", "DecodedImage", "DecodedMedia", "DecodedVideo", "MediaCache", "MediaKey", "MediaLimits",
    "check_declared", "decode_part", "read_source", "sniff_base64_kind", "sniff_kind", "sniff_mime", "wav_bytes",
]


class MediaCache(LRU[tuple[Any, ...], list[DecodedMedia]]):
    """A small thread-safe LRU of decoded media, keyed by content hash and limits.

    It also remembers, for as long as a part object lives, what that part decoded to when its
    source is immutable (bytes or a str): a streamed answer's windows and the input and output
    rails judge the same parts again and again, and must not base64-decode and hash them each
    time."""

    def __init__(self, max_items: int = 256) -> None:
        super().__init__(max_items, lock=True)
        self._parts: weakref.WeakKeyDictionary[Any, tuple[MediaLimits, list[DecodedMedia]]] = (
            weakref.WeakKeyDictionary())
        self._parts_lock = threading.Lock()

    def recall_part(self, part: MediaPart, limits: MediaLimits) -> list[DecodedMedia] | None:
        with self._parts_lock:
            found = self._parts.get(part)
            if found is None or found[0] != limits:
                return None
            self.hits += 1
            return found[1]

    def remember_part(self, part: MediaPart, limits: MediaLimits, decoded: list[DecodedMedia]) -> None:
        if isinstance(part.source, (bytes, str)):
            with self._parts_lock:
                self._parts[part] = (limits, decoded)


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
    if cache is not None and (known := cache.recall_part(part, limits)) is not None:
        return known
    data, mime_hint = read_source(part.source, limits, mime_hint=part.mime_type, origin=part.origin)
    digest = hashlib.sha256(data).hexdigest()
    sniffed_kind, sniffed_mime = sniff_mime(data[:64])
    # before the cache: the same bytes under a contradicting label are refused every time
    check_declared(part.kind, mime_hint or part.mime_type, sniffed_kind, sniffed_mime)
    key = (part.kind, digest, limits)
    if cache is not None and (hit := cache.get(key)) is not None:
        cache.remember_part(part, limits, hit)
        return hit
    if part.kind == "image" or (part.kind == "video" and sniffed_kind == "image"):
        decoded: list[DecodedMedia] = decode_image_bytes(data, digest, limits)
        if part.kind == "video" and not isinstance(decoded[0], DecodedVideo):
            raise UnsupportedMedia("passed as video but the bytes are a still image")
    elif part.kind == "audio":
        from .audio_video import decode_audio_bytes

        decoded = [decode_audio_bytes(data, digest, limits)]
    elif part.kind == "video":
        from .audio_video import decode_video_bytes

        decoded = decode_video_bytes(data, digest, limits)
    else:  # pragma: no cover - content.py only makes the three kinds
        raise UnsupportedMedia(f"unknown media kind {part.kind!r}")
    if cache is not None:
        cache.put(key, decoded)
        cache.remember_part(part, limits, decoded)
    return decoded
