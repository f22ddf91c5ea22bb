"""LangChain shapes -> the core's :class:`~omniguard_plugins.content.Conversation`.

Message content goes through ``BaseMessage.content_blocks``, so LangChain's own translators
normalise OpenAI ``image_url``/``input_audio`` parts and legacy v0 ``source_type`` blocks into
the standard ``text``/``image``/``audio``/``video``/``file`` blocks first; OpenAI-shaped parts
LangChain leaves as ``non_standard`` (vLLM's ``video_url``/``audio_url``) are read by the core's
:func:`~omniguard_plugins.openai_messages.parts_from_openai`. Anything else is a
:class:`~omniguard_plugins.errors.ContentError`: content is never dropped unjudged.

A plain dict chain input (``{"question": ..., "image": b64}``) is judged value by value, in key
order: a message list or message contributes its turns; content blocks their parts; bytes, a
``Path`` or a PIL image a sniffed media part; a ``str`` is media when it is a ``data:image|audio|
video/...`` URI or its key names a media kind (``image``, ``audio``, ``video`` as a
``_``-separated word, singular or plural: ``image``, ``image_b64``, ``user_videos``), and text
otherwise; a list under a media-named key is one media part per item; long base64 that decodes
to media under any other key is a ContentError, never prose; numbers, booleans and ``None``
are settings, not content, and are skipped. No string from a block or a dict is ever read as a
file on the judge's host (see :data:`omniguard_plugins.content.Origin`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue

from omniguard_plugins.content import Audio, Conversation, Image, Part, Role, Text, Turn, Video, to_part
from omniguard_plugins.doors import render_tool_call
from omniguard_plugins.errors import ContentError
from omniguard_plugins.media import sniff_base64_kind
from omniguard_plugins.openai_messages import parts_from_openai

__all__ = ["has_content", "parts_from_blocks", "parts_of", "role_of", "to_conversation", "turn_of"]

_MEDIA: dict[str, type[Image] | type[Audio] | type[Video]] = {"image": Image, "audio": Audio, "video": Video}
#: blocks that are not content a person reads: the model's calls and private reasoning
_NOT_CONTENT = frozenset(
    {"tool_call", "tool_call_chunk", "invalid_tool_call", "server_tool_call", "server_tool_call_chunk",
     "server_tool_result", "reasoning"}
)
_OPENAI_PARTS = frozenset({"image_url", "input_image", "input_audio", "audio_url", "video_url", "text", "input_text"})
_MEDIA_KEY = re.compile(r"(?:^|_)(image|img|photo|audio|voice|video)s?(?:_|$)", re.I)
_KEY_KIND = {"image": "image", "img": "image", "photo": "image", "audio": "audio", "voice": "audio", "video": "video"}
_DATA_URI_KIND = re.compile(r"^data:(image|audio|video)/", re.I)


def parts_from_blocks(blocks: Iterable[Mapping[str, Any]]) -> tuple[Part, ...]:
    """Standard v1 content blocks (``message.content_blocks``) as Parts."""
    parts: list[Part] = []
    for index, block in enumerate(blocks, start=1):
        parts.extend(_block(block, index))
    return tuple(parts)


def _block(block: Mapping[str, Any], index: int) -> tuple[Part, ...]:
    kind = block.get("type")
    if kind == "text":
        return (Text(block.get("text") or ""),)
    if kind == "refusal":  # shown to the user like text
        return (Text(block.get("refusal") or ""),)
    if kind in _NOT_CONTENT:
        return ()
    if kind in _MEDIA:
        return (_media(_MEDIA[kind], block, index),)
    if kind == "text-plain":
        return (Text(_plain_text(block, index)),)
    if kind == "file":
        return (_file(block, index),)
    if kind == "non_standard":
        value = block.get("value")
        if isinstance(value, Mapping) and value.get("type") in _OPENAI_PARTS:
            return _openai(value, index)
        shown = value.get("type") if isinstance(value, Mapping) else type(value).__name__
        raise ContentError(f"content block #{index} is a non-standard {shown!r} block OmniGuard cannot judge")
    raise ContentError(f"content block #{index} has unsupported type {kind!r}")


def _openai(value: Mapping[str, Any], index: int) -> tuple[Part, ...]:
    # OpenAI's image_url also accepts a bare string url, which LangChain leaves non-standard
    if value.get("type") == "image_url" and isinstance(value.get("image_url"), str):
        value = {**value, "image_url": {"url": value["image_url"]}}
    try:
        return parts_from_openai([value])
    except ContentError as exc:
        raise ContentError(f"content block #{index}: {exc}") from None


def _media(cls: type[Image] | type[Audio] | type[Video], block: Mapping[str, Any], index: int) -> Part:
    mime = block.get("mime_type")
    name = (block.get("extras") or {}).get("filename") if isinstance(block.get("extras"), Mapping) else None
    # a block's fields say what they hold: base64 is base64 only, a url a data: URI or an
    # http(s) URL; neither is ever read as a file on the judge's host
    if block.get("base64"):
        return cls(block["base64"], mime_type=mime, name=name, origin="base64")
    if block.get("url"):
        return cls(block["url"], mime_type=mime, name=name, origin="url")
    if block.get("file_id"):
        raise ContentError(
            f"content block #{index} refers to provider file id {block['file_id']!r}; "
            "OmniGuard needs the bytes: pass base64 or a url"
        )
    raise ContentError(f"content block #{index} ({block.get('type')}) has no base64 or url")


def _plain_text(block: Mapping[str, Any], index: int) -> str:
    if isinstance(block.get("text"), str):
        return block["text"]
    if block.get("base64"):
        try:
            return base64.b64decode(block["base64"]).decode("utf-8")
        except (binascii.Error, ValueError, TypeError):
            raise ContentError(f"content block #{index} (text-plain) is not base64 UTF-8 text") from None
    raise ContentError(f"content block #{index} (text-plain) has no text or base64 (urls are not fetched)")


def _file(block: Mapping[str, Any], index: int) -> Part:
    mime = str(block.get("mime_type") or "")
    major = mime.split("/", 1)[0].lower()
    if major in _MEDIA:
        return _media(_MEDIA[major], block, index)
    if mime == "text/plain":
        return Text(_plain_text(block, index))
    if not mime and block.get("base64"):
        part = to_part(_b64_bytes(block["base64"], index))  # sniffs image/audio/video, else ContentError
        return part
    raise ContentError(
        f"content block #{index} is a {mime or 'file of unknown type'}; OmniGuard judges text, image, audio and video"
    )


def _b64_bytes(data: Any, index: int) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ContentError(f"content block #{index} has invalid base64") from None


# ------------------------------------------------------------------------------ messages


def role_of(message: BaseMessage) -> Role | None:
    """user / assistant, or None for messages the judge does not read as a turn (system, tool)."""
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        roles: dict[str, Role] = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}
        return roles.get(message.role.lower())
    return None


def parts_of(value: Any) -> tuple[Part, ...]:
    """The parts of one message, one content list, or one piece of content."""
    if isinstance(value, BaseMessage):
        return parts_from_blocks(_blocks_of(value))
    if isinstance(value, (list, tuple)) and all(isinstance(b, (str, Mapping)) for b in value):
        # raw content: let LangChain's translators normalise OpenAI and v0 blocks
        return parts_from_blocks(_blocks_of(HumanMessage(content=list(value))))
    if isinstance(value, Mapping) and "type" in value:
        return parts_of([value])
    if isinstance(value, str):
        return (Text(value),) if value else ()
    return (to_part(value),)


def _blocks_of(message: BaseMessage) -> list[Any]:
    """``message.content_blocks``; LangChain's translators raise KeyError/AttributeError on some
    malformed blocks (a ``non_standard`` block with no value), which is bad content, not a bug."""
    try:
        return list(message.content_blocks)
    except Exception as exc:  # noqa: BLE001
        raise ContentError(f"LangChain cannot read this message's content blocks ({type(exc).__name__})") from None


def has_content(message: BaseMessage) -> bool:
    """Whether a message carries anything a person reads (not only tool calls or reasoning)."""
    return any(block.get("type") not in _NOT_CONTENT and block != {"type": "text", "text": ""}
               for block in _blocks_of(message))


def turn_of(message: BaseMessage, role: Role | None = None) -> Turn:
    """One message as a Turn; ``role`` overrides (e.g. a tool result judged as input)."""
    chosen = role or role_of(message)
    if chosen is None:
        raise ContentError(f"a {type(message).__name__} is not a user or assistant turn")
    return Turn(chosen, parts_of(message))


def _turns_from_messages(messages: Sequence[BaseMessage]) -> list[Turn]:
    turns: list[Turn] = []
    for message in messages:
        role = role_of(message)
        if role is None:
            if isinstance(message, (SystemMessage, ToolMessage)) or message.type in ("system", "tool", "function"):
                continue  # context the judge was not trained on; tool results are judged by the middleware
            raise ContentError(f"cannot judge a {type(message).__name__} ({message.type!r})")
        _append(turns, Turn(role, parts_of(message) + tool_call_parts(message)))
    return turns


def tool_call_parts(message: BaseMessage) -> tuple[Part, ...]:
    """An assistant message's tool calls as the judge reads them through every door
    (:func:`~omniguard_plugins.doors.render_tool_call`): an action the model takes is judged like
    text it shows."""
    calls = getattr(message, "tool_calls", None) or []
    return tuple(p for call in calls for p in render_tool_call(call["name"], call.get("args") or {}))


def _append(turns: list[Turn], turn: Turn) -> None:
    if turns and turns[-1].role == turn.role:
        turns[-1] = Turn(turn.role, turns[-1].parts + turn.parts)
    elif turn.parts:
        turns.append(turn)


def _is_message_list(value: Any) -> bool:
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return all(
        isinstance(m, BaseMessage)
        or (isinstance(m, Mapping) and "role" in m)
        or (isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str))
        for m in value
    )


def _dict_turns(data: Mapping[str, Any], role: Role) -> list[Turn]:
    turns: list[Turn] = []
    loose: list[Part] = []
    for key, value in data.items():
        if value is None or isinstance(value, (bool, int, float)):
            continue
        if isinstance(value, BaseMessage) or _is_message_list(value) or isinstance(value, PromptValue):
            for turn in _turns(value, role):
                _append(turns, turn)
            continue
        loose.extend(_value_parts(str(key), value))
    if loose:
        _append(turns, Turn(role, tuple(loose)))
    return turns


def _value_parts(key: str, value: Any) -> tuple[Part, ...]:
    named = _MEDIA_KEY.search(key)
    key_kind = _KEY_KIND[named.group(1).lower()] if named else None
    if isinstance(value, str):
        return _str_part(key, key_kind, value)
    if isinstance(value, (bytes, bytearray, Path)):
        return (to_part(bytes(value) if not isinstance(value, Path) else value),)
    if key_kind and isinstance(value, (list, tuple)):  # {"images": [b64, b64]}: each one media
        return tuple(p for item in value for p in _value_parts(key, item))
    if isinstance(value, Mapping) and "type" not in value:
        return tuple(p for t in _dict_turns(value, "user") for p in t.parts)
    try:
        return parts_of(value)
    except ContentError as exc:
        raise ContentError(f"input key {key!r}: {exc}") from None


def _str_part(key: str, key_kind: str | None, value: str) -> tuple[Part, ...]:
    """A dict value that is a str: media when a data: URI or a media-named key says so (read
    as base64, a data: URI or a URL, never a host path), else text; base64 media under a key
    that names no kind is refused rather than judged as prose."""
    if not value:
        return ()
    uri = _DATA_URI_KIND.match(value)
    kind = uri.group(1).lower() if uri else key_kind
    if kind:
        return (_MEDIA[kind](value, name=key, origin="wire"),)
    sniffed = sniff_base64_kind(value)
    if sniffed:
        raise ContentError(
            f"input key {key!r} holds base64 {sniffed}; name the key after its kind (e.g. {sniffed!r}) "
            f"or pass a content block"
        )
    return (Text(value),)


def _turns(value: Any, role: Role) -> list[Turn]:
    if isinstance(value, Conversation):
        return list(value.turns)
    if isinstance(value, PromptValue):
        return _turns_from_messages(value.to_messages())
    if isinstance(value, BaseMessage):
        return _turns_from_messages([value]) if role_of(value) else [turn_of(value, role)]
    if _is_message_list(value):
        return _turns_from_messages(convert_to_messages(value))
    if isinstance(value, Mapping):
        if "type" in value and "role" not in value:
            return [Turn(role, parts_of(value))]
        if isinstance(value.get("messages"), (list, tuple)):
            return _turns_from_messages(convert_to_messages(value["messages"]))
        return _dict_turns(value, role)
    return [Turn(role, parts_of(value))]


def to_conversation(value: Any, *, role: Role = "user") -> Conversation:
    """Any LangChain input or output as a Conversation.

    ``role`` is the role of content that carries none (a str, a dict of values, content
    blocks): ``"user"`` for a chain's input, ``"assistant"`` for its output.
    """
    turns = _turns(value, role)
    if not any(t.parts for t in turns):
        raise ContentError(f"nothing to judge in {type(value).__name__}: no text or media")
    return Conversation(tuple(turns))
