"""Where media bytes come from: bytes, file-likes, ``data:`` URIs, base64, URLs (when allowed)
and, from the app's own code only, files. See :data:`omniguard_plugins.content.Origin`."""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptMedia, MediaError, MediaFetchRefused, MediaTooLarge, UnsupportedMedia
from .sniff import sniff_mime
from .types import MediaLimits

if TYPE_CHECKING:
    from ..content import Origin

__all__ = ["read_source", "sniff_kind"]

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)
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


def _read_untrusted_str(
    source: str, limits: MediaLimits, mime_hint: str | None, origin: str
) -> tuple[bytes, str | None]:
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
