"""What bytes are, from their leading magic alone, and whether that contradicts their label."""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import UnsupportedMedia

__all__ = ["check_declared", "sniff_base64_kind", "sniff_mime"]

_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


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


def sniff_base64_kind(text: str) -> str | None:
    """The media kind (image/audio/video) of long base64 text from its first decoded bytes, or
    None. Lets a converter refuse base64 media it would otherwise judge as prose."""
    head = text.strip()[:88]
    if len(head) < 64 or not _B64_CHARS.match(head) or any(c.isspace() for c in head):
        return None
    try:
        urlsafe = "-" in head or "_" in head
        decoded = base64.urlsafe_b64decode(head) if urlsafe else base64.b64decode(head, validate=True)
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
