"""OpenAI Agents SDK shapes -> the core's content. Conversion only: no judging here.

The SDK speaks the Responses API: a run's input is a str or a list of input items (messages whose
content is a str or ``input_text`` / ``input_image`` / ``input_file`` / ``input_audio`` parts, plus
tool calls and their outputs), and a function tool may return a str, ``ToolOutputText`` /
``ToolOutputImage`` / ``ToolOutputFileContent`` (or their dict forms) or a list of them. Each part
is mapped onto the chat-completions part the core's :mod:`omniguard_plugins.openai_messages`
already reads, so media are judged as media: a data: URI or base64 file with an image, audio or
video type, a text file as text. File ids are never fetched (a ContentError, so the judge fails
closed under ``on_error``), nor is anything read from the judge's disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any

from omniguard_plugins.content import Conversation, Part, Text, Turn
from omniguard_plugins.errors import ContentError
from omniguard_plugins.openai_messages import conversation_from_openai, parts_from_openai

__all__ = ["input_conversation", "output_parts", "tool_output_parts"]

_SKIPPED_ROLES = ("system", "developer")
_URL_PART = {"image": "image_url", "audio": "audio_url", "video": "video_url"}


def input_conversation(items: str | Sequence[Any]) -> Conversation:
    """A run's input as a Conversation: its user and assistant messages, in order. System and
    developer prompts are the app's; tool calls and their outputs are judged by the tool
    guardrails, when they happen."""
    if isinstance(items, str):
        return Conversation((Turn("user", (Text(items),)),))
    if not isinstance(items, Sequence):
        raise ContentError(f"a run's input is a str or a list of items, got {type(items).__name__}")
    messages: list[dict[str, Any]] = []
    for item in items:
        data = _plain(item)
        role = data.get("role") if isinstance(data, Mapping) else None
        if role is None or role in _SKIPPED_ROLES:
            continue
        content = data.get("content")
        if isinstance(content, Sequence) and not isinstance(content, str):
            content = [_chat_part(_plain(p)) for p in content]
        messages.append({"role": role, "content": content})
    return conversation_from_openai(messages)


def output_parts(output: Any) -> tuple[Part, ...]:
    """An agent's final output (a str, or a structured ``output_type`` value) as text."""
    if isinstance(output, str):
        return (Text(output),) if output.strip() else ()
    dump = getattr(output, "model_dump_json", None)
    text = dump() if callable(dump) else json.dumps(output, ensure_ascii=False, default=str)
    return (Text(text),)


def tool_output_parts(output: Any) -> tuple[Part, ...]:
    """What a function tool returned, as the model will read it."""
    items = output if isinstance(output, list) else [output]
    plain = [_plain(i) for i in items]
    if all(isinstance(p, Mapping) and p.get("type") in ("text", "image", "file") for p in plain):
        return parts_from_openai([_chat_part(p) for p in plain])
    text = output if isinstance(output, str) else str(output)  # the SDK sends other values as str()
    return (Text(text),) if text.strip() else ()


def _plain(value: Any) -> Any:
    """A pydantic SDK object (an input item, a ToolOutput*) as its dict form."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) and not isinstance(value, Mapping) else value


def _chat_part(part: Any) -> Any:
    """One Responses / SDK part as the chat-completions part the core reads."""
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "image":  # a tool's ToolOutputImage
        if not part.get("image_url"):
            raise ContentError("a tool's image has only a file id; file ids are not fetched")
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    if kind == "input_image" and not part.get("image_url"):
        raise ContentError("input_image has only a file id; file ids are not fetched")
    if kind in ("file", "input_file") and "file" not in part:  # the Responses shape, not chat's
        return _file_part(part)
    return part


def _file_part(part: Mapping[str, Any]) -> dict[str, Any]:
    name = part.get("filename")
    data, url = part.get("file_data"), part.get("file_url")
    if isinstance(data, str) and data:
        if data[:5].lower() == "data:":
            uri, mime = data, data[5:].split(";", 1)[0].lower()
        else:
            mime = _mime_of(name)
            uri = f"data:{mime};base64,{data}"
        if mime.startswith("text/") or mime in ("application/json", "application/xml"):
            return {"type": "text", "text": _base64_text(uri.split(",", 1)[1], name)}
        return {"type": "file", "file": {"file_data": uri, "filename": name}}
    if isinstance(url, str) and url:
        kind = _mime_of(url).split("/", 1)[0]
        if kind not in _URL_PART:
            raise ContentError(f"file url {url[:40]!r} is not an image, audio or video file")
        return {"type": _URL_PART[kind], _URL_PART[kind]: {"url": url}}
    raise ContentError("a file with only a file id cannot be judged; file ids are not fetched")


def _mime_of(name: Any) -> str:
    mime = mimetypes.guess_type(str(name))[0] if name else None
    if mime is None:
        raise ContentError(f"file {str(name)[:40]!r} has no data: URI and no known type; send a data: URI")
    return mime


def _base64_text(data: str, name: Any) -> str:
    try:
        return base64.b64decode(data, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError) as exc:
        raise ContentError(f"file {str(name)[:40]!r} is not valid base64") from exc
