"""What an OpenAI-style answer carries, read once for the output rail: a whole message or a stream.

The gateway reads plain JSON and the LiteLLM guardrail reads LiteLLM's response objects, so both
shapes are accepted (mappings, or objects with the same attribute names). Everything an answer
carries that a user sees or an app acts on is judged, in this order:

- ``reasoning_content`` (or ``reasoning``): text many UIs show;
- ``content`` (a str or parts: text, images) and ``refusal``;
- ``audio``: the spoken answer, its ``transcript`` as text and its ``data`` as an audio part;
- ``images`` (LiteLLM's and OpenRouter's image output);
- ``tool_calls`` (and the legacy ``function_call``): each rendered by
  :func:`~omniguard_plugins.doors.render_tool_call`, the same rendering every door uses.

A stream is read by :class:`AnswerStream`: text and reasoning go through the rail's windows;
a chunk that carries a piece of a tool call or of the audio is held for the final check (a
piece of a call is not a call, a piece of PCM is not a recording), which judges the assembled
calls and audio with the rest, so nothing of either reaches the client before its verdict.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from .content import Audio, Image, MediaPart, Part, Text, Video
from .doors import Stage, render_tool_call, summarize
from .errors import ContentError
from .media import wav_bytes
from .openai_messages import parts_from_openai
from .streaming import Judge, Window
from .verdict import Verdict

__all__ = ["STREAM_AUDIO_RATE", "AnswerStream", "answer_parts", "blocked_event", "field",
           "has_content", "openai_content", "pcm16_audio"]

#: OpenAI streams audio as 16-bit mono PCM at 24 kHz (``audio.format`` must be ``pcm16`` to stream)
STREAM_AUDIO_RATE = 24_000


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` for an object; None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def answer_parts(message: Any, *, audio_format: str | None = None) -> tuple[Part, ...]:
    """Everything a completion message carries, as parts of the assistant turn (see the module
    docstring for the order). ``audio_format`` is the request's ``audio.format``: ``pcm16``
    audio is raw PCM at 24 kHz, wrapped as WAV here; other formats are files the judge sniffs.
    A part the judge cannot read (a malformed image part) raises ContentError: call this inside
    the check (a builder), so ``on_error`` decides."""
    if message is None:
        return ()
    parts: list[Part] = [*_texts(_reasoning(message), field(message, "refusal"))]
    parts.extend(_content_parts(field(message, "content")))
    audio = field(message, "audio")
    if audio is not None:
        parts.extend(_texts(field(audio, "transcript")))
        data = field(audio, "data")
        if isinstance(data, str) and data:
            parts.append(pcm16_audio(_b64decode(data)) if audio_format == "pcm16" else Audio(data, origin="base64"))
    parts.extend(_image_parts(field(message, "images")))
    for call in _calls(message):
        parts.extend(render_tool_call(*call))
    return tuple(parts)


def has_content(parts: Sequence[Part]) -> bool:
    """Whether there is anything to judge: media, or text that is not only whitespace."""
    return any(not isinstance(p, Text) or p.text.strip() for p in parts)


class AnswerStream:
    """Reads one streamed answer for a :class:`~omniguard_plugins.streaming.StreamRail`.

    ``read`` is the rail's ``read``: a chunk's text (reasoning and content) goes through the
    windows; a chunk with a piece of a tool call or of the audio is held for the final check
    (its text too). ``judge(window_judge)`` adds the assembled tool calls and audio (with its
    transcript) to the final check. Streamed audio is 16-bit mono PCM at 24 kHz (``audio_format``
    ``pcm16``, the only format OpenAI streams) unless its bytes start with a RIFF header; any
    other ``audio_format`` is a file sent in pieces, judged joined."""

    def __init__(self, *, audio_format: str | None = "pcm16") -> None:
        self.audio_format = audio_format
        self._calls: dict[int, list[Any]] = {}  # index -> [name, arguments]
        self._audio = bytearray()
        self._audio_b64 = ""  # base64 not yet decoded (a piece may end mid-quantum)
        self._transcript: list[str] = []
        self._held_text: list[str] = []

    def read(self, chunk: Any) -> tuple[str | None, Sequence[MediaPart]]:
        choices = field(chunk, "choices") or []
        delta = field(choices[0], "delta") if choices else None
        if delta is None:
            return "", ()
        text = "".join(t for t in (_reasoning(delta), field(delta, "refusal")) if isinstance(t, str))
        content = field(delta, "content")
        media: list[MediaPart] = []
        if isinstance(content, str):
            text += content
        elif content:
            for part in parts_from_openai(_plain(content)):
                if isinstance(part, Text):
                    text += part.text
                else:
                    media.append(part)
        media.extend(_image_parts(field(delta, "images")))
        held = self._take_calls(delta) | self._take_audio(field(delta, "audio"))
        if held:
            self._held_text.append(text)
            return None, media
        return text, media

    def final_parts(self) -> tuple[Part, ...]:
        """What the held chunks carried, assembled: their text, the tool calls, the audio."""
        parts: list[Part] = [*_texts("".join(self._held_text), "".join(self._transcript))]
        audio = self._audio_part()
        if audio is not None:
            parts.append(audio)
        for name, arguments in self._calls.values():
            parts.extend(render_tool_call(name or "", arguments))
        return tuple(parts)

    def judge(self, window_judge: Judge) -> Judge:
        """``window_judge`` with the assembled calls and audio added to the final check."""

        async def check(window: Window) -> Any:
            if window.kind == "final":
                extra = self.final_parts()
                if extra:
                    window = Window(window.kind, window.seq, window.start, window.end, (*window.parts, *extra))
            return await window_judge(window)

        return check

    # ------------------------------------------------------------------ pieces

    def _take_calls(self, delta: Any) -> bool:
        calls = field(delta, "tool_calls") or []
        legacy = field(delta, "function_call")
        if legacy is not None:
            calls = [*calls, {"index": -1, "function": legacy}]
        for position, call in enumerate(calls):
            index = field(call, "index")
            slot = self._calls.setdefault(index if isinstance(index, int) else position, [None, ""])
            function = field(call, "function")
            name, arguments = field(function, "name"), field(function, "arguments")
            if isinstance(name, str) and name and not slot[0]:
                slot[0] = name  # sent once, with the call's id, in its first piece
            if isinstance(arguments, str):
                slot[1] += arguments
        return bool(calls)

    def _take_audio(self, audio: Any) -> bool:
        if audio is None:
            return False
        transcript, data = field(audio, "transcript"), field(audio, "data")
        if isinstance(transcript, str):
            self._transcript.append(transcript)
        if isinstance(data, str) and data:
            self._audio_b64 += data.strip()
            whole = len(self._audio_b64) // 4 * 4
            try:
                self._audio += base64.b64decode(self._audio_b64[:whole], validate=True)
            except (binascii.Error, ValueError):
                self._audio_b64 = "!"  # not base64: judged as such (the decoder refuses it, on_error decides)
                return True
            self._audio_b64 = self._audio_b64[whole:]
        return True

    def _audio_part(self) -> Audio | None:
        if self._audio_b64 == "!":
            return Audio("!not-base64", origin="base64")
        if not self._audio:
            return None
        data = bytes(self._audio)
        if data.startswith(b"RIFF") or self.audio_format not in (None, "pcm16"):
            return Audio(base64.b64encode(data).decode("ascii"), origin="base64")
        return pcm16_audio(data)


def pcm16_audio(pcm: bytes, rate: int = STREAM_AUDIO_RATE) -> Audio:
    """OpenAI's ``pcm16`` audio (16-bit mono at 24 kHz) as a base64 WAV part (an odd last byte,
    half a sample, is dropped)."""
    wav = wav_bytes(pcm[: len(pcm) // 2 * 2], rate)
    return Audio(base64.b64encode(wav).decode("ascii"), mime_type="audio/wav", origin="base64")


def _b64decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ContentError("the answer's audio.data is not base64") from None


def blocked_event(verdict: Verdict, stage: Stage, **extra: Any) -> dict[str, Any]:
    """The SSE event that ends a blocked stream, the same through every door: OpenAI's error
    object (``code: "content_filter"``, the one-line block reason); ``extra`` rides beside it."""
    return {"error": {"message": summarize(verdict, stage).blocked_message(), "type": "invalid_request_error",
                      "param": None, "code": "content_filter"}, **extra}


def openai_content(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """Parts as an OpenAI message's content parts, for a check that travels as OpenAI messages
    (the LiteLLM guardrail's checkers, ``omniguard serve``'s ``/v1/guard``): text as ``text``,
    images as ``image_url``, audio as ``input_audio``, video as ``video_url``. Media sources are
    base64 or URLs here (what :func:`answer_parts` makes); anything else is a ContentError."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
            continue
        source = part.source
        if isinstance(source, (bytes, bytearray)):
            source = base64.b64encode(bytes(source)).decode("ascii")
        if not isinstance(source, str):
            raise ContentError(f"a {part.kind} part with a {type(source).__name__} source has no OpenAI form")
        is_url = source.lstrip()[:8].lower().startswith(("data:", "http://", "https://"))
        if isinstance(part, Audio) and not is_url:
            fmt = (part.mime_type or "audio/wav").split("/")[-1]
            out.append({"type": "input_audio", "input_audio": {"data": source, "format": fmt}})
            continue
        if not is_url:
            source = f"data:{part.mime_type or _sniffed_mime(source, part.kind)};base64,{source}"
        key = "video_url" if isinstance(part, Video) else "image_url" if isinstance(part, Image) else "audio_url"
        out.append({"type": key, key: {"url": source}})
    return out


def _sniffed_mime(b64: str, kind: str) -> str:
    from .media import sniff_mime

    try:
        head = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
    except (binascii.Error, ValueError):
        head = b""
    return sniff_mime(head)[1] or f"{kind}/unknown"


# ---------------------------------------------------------------------- helpers


def _reasoning(message: Any) -> Any:
    value = field(message, "reasoning_content")
    return value if isinstance(value, str) and value else field(message, "reasoning")


def _texts(*values: Any) -> list[Part]:
    return [Text(v) for v in values if isinstance(v, str) and v]


def _plain(value: Any) -> Any:
    """LiteLLM's typed objects as the plain dicts the converter reads."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return _plain(dump()) if callable(dump) else value


def _content_parts(content: Any) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),) if content else ()
    return parts_from_openai(_plain(content)) if content else ()


def _image_parts(images: Any) -> list[MediaPart]:
    """``images`` entries (``{"type": "image_url", "image_url": {"url": ...}}``) as image parts."""
    return [p for p in parts_from_openai(_plain(list(images))) if isinstance(p, Image)] if images else []


def _calls(message: Any) -> list[tuple[str, Any]]:
    calls = []
    for call in field(message, "tool_calls") or []:
        function = field(call, "function")
        calls.append((str(field(function, "name") or ""), field(function, "arguments")))
    legacy = field(message, "function_call")
    if legacy is not None:
        calls.append((str(field(legacy, "name") or ""), field(legacy, "arguments")))
    return calls
