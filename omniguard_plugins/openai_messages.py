"""OpenAI-style chat messages <-> Conversation.

The server, the NeMo adapter and the OpenAI backend all speak this shape, so the conversion
lives here once. Accepted content parts (as vLLM accepts them for Qwen2.5-Omni):
``text``, ``image_url``, ``input_audio``, ``audio_url``, ``video_url``, plus ``input_text`` /
``input_image`` from the Responses API, and ``file`` parts whose ``file_data`` is a ``data:`` URI
of an image, audio or video (how LiteLLM passes media). Unknown part types are a ContentError,
never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .content import Audio, Conversation, Image, Part, Text, Turn, Video
from .errors import ContentError

__all__ = ["conversation_from_openai", "parts_from_openai"]

_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "bot": "assistant"}


def parts_from_openai(content: Any) -> tuple[Part, ...]:
    """One message's ``content`` (a str or a list of parts) as Parts."""
    if content is None:
        return ()
    if isinstance(content, str):
        return (Text(content),) if content else ()
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, Iterable):
        raise ContentError(f"message content must be a str or a list of parts, got {type(content).__name__}")
    return tuple(_part(p, i) for i, p in enumerate(content, start=1))


def _quoted(value: Any, limit: int = 40) -> str:
    """A client's value in an error message, cut: errors reach logs and clients."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _url_of(value: Any, key: str, index: int) -> str:
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise ContentError(f"part #{index} ({key}) needs a url")
    # the wire format names data: URIs and http(s) URLs only (the parts are built with
    # origin="url", so nothing else is ever read as a file on the judge's host)
    head = value.lstrip()[:8].lower()
    if not (head.startswith("data:") or head.startswith("http://") or head.startswith("https://")):
        raise ContentError(f"part #{index} ({key}) url must be a data: URI or an http(s) URL")
    return value


def _part(part: Any, index: int) -> Part:
    if isinstance(part, str):
        return Text(part)
    if not isinstance(part, Mapping):
        raise ContentError(f"part #{index} must be an object, got {type(part).__name__}")
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise ContentError(f"part #{index} (text) needs a 'text' string")
        return Text(text)
    if kind in ("image_url", "input_image"):
        return Image(_url_of(part.get("image_url"), kind, index), origin="url")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
            raise ContentError(f"part #{index} (input_audio) needs input_audio.data (base64)")
        fmt = str(audio.get("format") or "wav").lower()
        if not fmt.isalnum():
            raise ContentError(f"part #{index} (input_audio) has an invalid format {_quoted(fmt)}")
        return Audio(audio["data"], mime_type=f"audio/{fmt}", origin="base64")
    if kind == "file":  # OpenAI's file part (LiteLLM passes audio and video this way): a data: URI only
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, Mapping) else None
        if not isinstance(file, Mapping) or not isinstance(data, str) or not data[:5].lower() == "data:":
            raise ContentError(f"part #{index} (file) needs file.file_data as a data: URI (file ids are not fetched)")
        major = data[5:].split("/", 1)[0].lower()
        classes: dict[str, type[Image] | type[Audio] | type[Video]] = {"image": Image, "audio": Audio, "video": Video}
        media = classes.get(major)
        if media is None:
            raise ContentError(f"part #{index} (file) is {_quoted(data[5:].split(';', 1)[0])}; "
                               "OmniGuard judges text, image, audio and video")
        return media(data, origin="url", name=_quoted(file.get("filename")) if file.get("filename") else None)
    if kind == "audio_url":
        return Audio(_url_of(part.get("audio_url"), kind, index), origin="url")
    if kind == "video_url":
        return Video(_url_of(part.get("video_url"), kind, index), origin="url")
    raise ContentError(f"part #{index} has unsupported type {_quoted(kind)}")


def conversation_from_openai(messages: Iterable[Mapping[str, Any]]) -> Conversation:
    """Chat messages as a Conversation. System and tool messages are context the judge was
    not trained on, so they are skipped; tool results an agent *shows* should be judged by the
    adapter as assistant/user content explicitly."""
    turns: list[Turn] = []
    for i, msg in enumerate(messages, start=1):
        if not isinstance(msg, Mapping):
            raise ContentError(f"message #{i} must be an object with role and content")
        role = _ROLES.get(str(msg.get("role", "")).lower())
        if role is None:
            if msg.get("role") in ("system", "developer", "tool", "function"):
                continue
            raise ContentError(f"message #{i} has unknown role {_quoted(msg.get('role'))}")
        parts = parts_from_openai(msg.get("content"))
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, turns[-1].parts + parts)  # type: ignore[arg-type]
        else:
            turns.append(Turn(role, parts))  # type: ignore[arg-type]
    if not turns:
        raise ContentError("no user or assistant message to judge")
    return Conversation(tuple(turns))
