"""LlamaIndex shapes -> the core's content parts. Conversion only: no judging here.

Media are passed to the core as sources (a Path, a file-like, base64 or a URL) and decoded
lazily by the judge, so a bad image becomes a typed, blocking verdict rather than an exception
in the host app. LlamaIndex stores inline media as base64 (``ImageNode.image``,
``MediaResource.data``, ``ImageBlock.image``); those are read as base64 only.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    AudioBlock,
    CachePoint,
    ChatMessage,
    CitableBlock,
    CitationBlock,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)
from llama_index.core.schema import BaseNode, ImageNode, MediaResource, MetadataMode, Node, QueryBundle

from omniguard_plugins.content import Audio, Conversation, Image, Part, Text, Video
from omniguard_plugins.doors import render_tool_call
from omniguard_plugins.errors import ContentError

if TYPE_CHECKING:
    from llama_index.core.llms.llm import ToolSelection

__all__ = ["answer_parts", "failing", "message_parts", "node_parts", "query_parts"]

#: document types read as text (a PDF or an office file is not text the judge can read)
_TEXT_DOCUMENTS = ("text/", "application/json", "application/xml", "application/x-yaml", "application/yaml")

_MEDIA: dict[str, type[Image] | type[Audio] | type[Video]] = {"image": Image, "audio": Audio, "video": Video}


def query_parts(query: str | QueryBundle) -> tuple[Part, ...]:
    """A query string, or a QueryBundle's text plus its ``image_path``."""
    if isinstance(query, str):
        return (Text(query),) if query else ()
    if not isinstance(query, QueryBundle):
        raise ContentError(f"a query is a str or a QueryBundle, got {type(query).__name__}")
    parts: list[Part] = [Text(query.query_str)] if query.query_str else []
    if query.image_path:
        parts.append(Image(Path(query.image_path), name=Path(query.image_path).name))
    return tuple(parts)


def message_parts(message: str | ChatMessage) -> tuple[Part, ...]:
    """A chat message (a str, or a ChatMessage with text, image, audio, video, text-document
    and tool-call blocks; a tool call is rendered by the core's ``render_tool_call``)."""
    if isinstance(message, str):
        return (Text(message),) if message else ()
    if not isinstance(message, ChatMessage):
        raise ContentError(f"a chat message is a str or a ChatMessage, got {type(message).__name__}")
    return tuple(p for i, block in enumerate(message.blocks, start=1) for p in _block_parts(block, i))


def answer_parts(message: ChatMessage, tool_calls: Sequence[ToolSelection] | None = None) -> tuple[Part, ...]:
    """An LLM's answer as the judge reads it: its text, reasoning and media, then each tool call
    (``tool_calls``: the LLM's own reading of the response, which also finds calls kept in
    ``additional_kwargs``; without it, the message's tool-call blocks)."""
    if tool_calls is None:
        return message_parts(message)
    blocks = [b for b in message.blocks if not isinstance(b, ToolCallBlock)]
    own = tuple(p for i, block in enumerate(blocks, start=1) for p in _block_parts(block, i))
    return own + tuple(p for call in tool_calls for p in render_tool_call(call.tool_name, call.tool_kwargs))


def _block_parts(block: Any, index: int) -> tuple[Part, ...]:
    if isinstance(block, TextBlock):
        return (Text(block.text),) if block.text else ()
    if isinstance(block, ThinkingBlock):
        return (Text(block.content),) if block.content else ()
    if isinstance(block, CachePoint):  # a provider caching marker, not content
        return ()
    if isinstance(block, ImageBlock):
        return (_media("image", block.image, block.path, block.url, block.image_mimetype),)
    if isinstance(block, AudioBlock):
        mime = f"audio/{block.format}" if block.format else None
        return (_media("audio", block.audio, block.path, block.url, mime),)
    if isinstance(block, VideoBlock):
        return (_media("video", block.video, block.path, block.url, block.video_mimetype),)
    if isinstance(block, DocumentBlock):
        return _document_text(block, index)
    if isinstance(block, ToolCallBlock):
        return render_tool_call(block.tool_name, block.tool_kwargs)
    if isinstance(block, CitableBlock):
        return tuple(p for sub in block.content for p in _block_parts(sub, index))
    if isinstance(block, CitationBlock):
        return _block_parts(block.cited_content, index)
    kind = getattr(block, "block_type", type(block).__name__)
    raise ContentError(f"block #{index} ({kind}) cannot be judged; send text, image, audio or video blocks")


def _document_text(block: DocumentBlock, index: int) -> tuple[Part, ...]:
    """A text document's content (inline base64 or the app's own path; a url is never fetched)."""
    mime = (block.document_mimetype or "").lower()
    if not mime.startswith(_TEXT_DOCUMENTS):
        raise ContentError(f"block #{index} (document) of type {mime or 'unknown'} cannot be judged; "
                           "OmniGuard reads text documents, images, audio and video")
    if isinstance(block.data, io.IOBase):
        block.data.seek(0)
        raw = block.data.read()
        block.data.seek(0)
    elif block.data:
        try:
            raw = base64.b64decode(block.data, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ContentError(f"block #{index} (document) is not valid base64") from exc
    elif block.path:
        try:
            raw = Path(block.path).read_bytes()
        except OSError as exc:
            raise ContentError(f"block #{index} (document) cannot be read: {type(exc).__name__}") from exc
    else:
        raise ContentError(f"block #{index} (document) has no data or path (urls are not fetched)")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return (Text(text),) if text.strip() else ()


def node_parts(node: BaseNode) -> tuple[Part, ...]:
    """A retrieved node's text and media: TextNode, ImageNode (``image`` base64,
    ``image_path``, ``image_url``), and Node/Document (``text_resource`` and the
    image/audio/video resources). Metadata is not judged: it is the app's, not retrieved text."""
    name = f"node {node.node_id[:8]}"
    if isinstance(node, Node):
        text = node.text_resource.text if node.text_resource else None
        parts: list[Part] = [Text(text)] if text else []
        for kind in ("image", "audio", "video"):
            resource: MediaResource | None = getattr(node, f"{kind}_resource")
            if resource is not None and (resource.data or resource.path or resource.url):
                parts.append(_media(kind, resource.data, resource.path, resource.url, resource.mimetype, name))
        return tuple(parts)
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    parts = [Text(text)] if text else []
    if isinstance(node, ImageNode) and (node.image or node.image_path or node.image_url):
        parts.append(_media("image", node.image, node.image_path, node.image_url, node.image_mimetype, name))
    return tuple(parts)


def _media(kind: str, data: Any, path: Any, url: Any, mime: str | None, name: str | None = None) -> Part:
    """One media part from LlamaIndex's (inline data | path | url) triple, in that order.

    Inline data is LlamaIndex's base64 and is read as base64 only; a url field as a ``data:``
    URI or an http(s) URL only. Only the explicit ``path`` fields, which the app's own readers
    set, name a file (the core rewinds a file-like after reading it)."""
    cls = _MEDIA[kind]
    if data is not None and data != b"" and data != "":
        if isinstance(data, io.IOBase):
            return cls(data, mime_type=mime, name=name)
        b64 = data.decode("ascii", "replace") if isinstance(data, (bytes, bytearray)) else str(data)
        return cls(b64, mime_type=mime, name=name, origin="base64")
    if path is not None and str(path):
        p = Path(path)
        return cls(p, mime_type=mime, name=name or p.name)
    if url is not None and str(url):
        return cls(str(url), mime_type=mime, name=name, origin="url")
    raise ContentError(f"{kind} has no data, path or url")



def failing(exc: ContentError) -> Callable[[], Conversation]:
    """A conversation builder that raises a conversion's error inside the judge, so ``on_error``
    decides it (and counts it) there, like any other failure."""

    def build() -> Conversation:
        raise exc

    return build
