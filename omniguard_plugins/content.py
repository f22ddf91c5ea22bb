"""The framework-free content model every adapter converts into.

A ``Conversation`` is a tuple of ``Turn``s; a turn is a role and its parts. Media parts hold
their *source* (a path, bytes, a file-like, base64, a ``data:`` URI, a URL or a PIL image) and
are decoded lazily by :mod:`omniguard_plugins.media`, so building a Conversation is cheap and
never fails on bad bytes: errors surface, typed, when the judge reads the part.

A media part also records where its source came from (``origin``). The app's own code may
name a file (``Image("x.png")``); content that came from a user or a wire format never becomes
a host path, whatever it looks like: adapters build such parts with ``origin="base64"`` (a
base64 field: base64 only), ``"url"`` (a url field: a ``data:`` URI or an http(s) URL) or
``"wire"`` (any other untrusted string: either of those, never a path).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args

from .errors import ContentError

__all__ = [
    "Audio",
    "Conversation",
    "Image",
    "MediaPart",
    "Origin",
    "Part",
    "Role",
    "Text",
    "Turn",
    "Video",
]

Role = Literal["user", "assistant"]

#: where a media part's source came from, which decides how a str source may be read (see the
#: module docstring): only ``"local"`` (the app's own code, the default) may name a file
Origin = Literal["local", "base64", "url", "wire"]
_ORIGINS = frozenset(get_args(Origin))


@dataclass(frozen=True)
class Text:
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ContentError(f"Text needs a str, got {type(self.text).__name__}")


@dataclass(frozen=True, eq=False)
class _Media:
    """A media part: ``source`` is anything :func:`media.read_source` accepts.

    ``mime_type`` is a hint (e.g. from a data URI or a framework block); the decoder still
    sniffs the bytes and refuses a hint the bytes contradict.
    """

    source: Any
    mime_type: str | None = None
    #: a short label for error messages and verdict details, e.g. a filename
    name: str | None = field(default=None, compare=False)
    #: where ``source`` came from; anything but ``"local"`` is never read as a host path
    origin: Origin = field(default="local", kw_only=True)

    kind: str = field(default="media", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.source is None:
            raise ContentError(f"{type(self).__name__} needs a source, got None")
        if isinstance(self.source, (str, os.PathLike)) and not str(self.source):
            raise ContentError(f"{type(self).__name__} needs a source, got an empty string")
        if self.origin not in _ORIGINS:
            raise ContentError(f"origin must be one of {', '.join(sorted(_ORIGINS))}, got {self.origin!r}")
        if self.origin != "local" and isinstance(self.source, os.PathLike):
            raise ContentError(f"a {self.origin} {type(self).__name__} cannot be a file path")


@dataclass(frozen=True, eq=False)
class Image(_Media):
    kind: str = field(default="image", init=False, repr=False)


@dataclass(frozen=True, eq=False)
class Audio(_Media):
    kind: str = field(default="audio", init=False, repr=False)

    @classmethod
    def from_pcm(cls, pcm16: bytes, sample_rate: int, channels: int = 1, *, name: str | None = None) -> Audio:
        """Raw little-endian 16-bit PCM (what voice transports carry) as an Audio part. The
        samples are kept at their own rate in a WAV container and resampled once, to the
        judge's rate, when decoded. A rate, channel count or length that cannot be PCM is a
        ContentError."""
        from .media.pcm import wav_bytes

        if not isinstance(pcm16, (bytes, bytearray, memoryview)):
            raise ContentError(f"Audio.from_pcm needs bytes of 16-bit PCM, got {type(pcm16).__name__}")
        return cls(wav_bytes(pcm16, sample_rate, channels), mime_type="audio/wav", name=name)


@dataclass(frozen=True, eq=False)
class Video(_Media):
    kind: str = field(default="video", init=False, repr=False)


MediaPart = Union[Image, Audio, Video]
Part = Union[Text, Image, Audio, Video]

PartLike = Union[Part, str, Any]  # Any: a PIL image, Path, bytes


def to_part(value: PartLike) -> Part:
    """Coerce the shorthand users write into a Part.

    ``str`` is text (never a path: wrap paths in ``Image(...)`` to say what they are), a
    PIL image is an Image, a ``Path`` or bytes is sniffed for its kind.
    """
    if isinstance(value, (Text, Image, Audio, Video)):
        return value
    if isinstance(value, str):
        return Text(value)
    if _is_pil_image(value):
        return Image(value)
    if isinstance(value, (Path, bytes, bytearray, memoryview)) or isinstance(value, io.IOBase):
        return _sniff_part(value)
    raise ContentError(
        f"cannot use {type(value).__name__} as message content; pass str, a PIL image, "
        "or Text/Image/Audio/Video"
    )


def _is_pil_image(value: Any) -> bool:
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return False
    return isinstance(value, PILImage.Image)


def _sniff_part(value: Any) -> Part:
    from .media import sniff_kind

    kind = sniff_kind(value)
    classes: dict[str, type[Image] | type[Audio] | type[Video]] = {"image": Image, "audio": Audio, "video": Video}
    cls = classes.get(kind) if kind is not None else None
    if cls is None:
        raise ContentError(f"cannot tell what kind of media {value!r:.60} is; wrap it in Image/Audio/Video")
    return cls(value)


def to_parts(content: PartLike | Iterable[PartLike] | None) -> tuple[Part, ...]:
    if content is None:
        return ()
    if isinstance(content, (str, Text, Image, Audio, Video, bytes, bytearray, Path)) or _is_pil_image(content):
        return (to_part(content),)
    if isinstance(content, Iterable):
        return tuple(to_part(item) for item in content)
    return (to_part(content),)


@dataclass(frozen=True)
class Turn:
    role: Role
    parts: tuple[Part, ...]

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant"):
            raise ContentError(f"role must be 'user' or 'assistant', got {self.role!r}")
        object.__setattr__(self, "parts", to_parts(self.parts))

    @classmethod
    def user(cls, *content: PartLike) -> Turn:
        return cls("user", tuple(to_part(c) for c in content))

    @classmethod
    def assistant(cls, *content: PartLike) -> Turn:
        return cls("assistant", tuple(to_part(c) for c in content))

    @property
    def text(self) -> str:
        """All text parts joined by a blank line: what the prompt shows for this turn."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, Text) and p.text.strip())

    @property
    def media(self) -> tuple[MediaPart, ...]:
        return tuple(p for p in self.parts if not isinstance(p, Text))


@dataclass(frozen=True)
class Conversation:
    """Turns in order. ``direction="input"`` judges the last user turn,
    ``"output"`` the last assistant turn in the context of what came before."""

    turns: tuple[Turn, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(self.turns))
        for turn in self.turns:
            if not isinstance(turn, Turn):
                raise ContentError(f"Conversation holds Turns, got {type(turn).__name__}")

    @classmethod
    def of(
        cls,
        user: PartLike | Sequence[PartLike] | None = None,
        assistant: PartLike | Sequence[PartLike] | None = None,
    ) -> Conversation:
        turns = []
        if user is not None:
            turns.append(Turn("user", to_parts(user)))
        if assistant is not None:
            turns.append(Turn("assistant", to_parts(assistant)))
        return cls(tuple(turns))

    def last(self, role: Role) -> Turn | None:
        for turn in reversed(self.turns):
            if turn.role == role:
                return turn
        return None

    @property
    def media(self) -> tuple[MediaPart, ...]:
        return tuple(m for t in self.turns for m in t.media)

    def is_empty(self) -> bool:
        return not any(t.parts for t in self.turns)
