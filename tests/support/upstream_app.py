"""A small OpenAI-compatible upstream LLM for gateway and LiteLLM tests (run on 127.0.0.1).

Replies are scripted: ``REPLIES`` maps a phrase in the last user message to the answer; any
other message is answered ``"You said: <text>."``. Streams go word by word. ``CARRIES`` maps a
phrase to an answer that carries more than text (tool calls, spoken audio, reasoning), streamed
as OpenAI streams them (a tool call's name and id first, then its arguments in pieces; audio as
16-bit PCM at 24 kHz in pieces, with its transcript). ``SLOW`` phrases make it slow: an answer
that never comes, or a stream that stops after two chunks; it waits (up to a minute) until the
client goes away and records that. Every request it receives is recorded (body, Authorization
header, ``disconnected`` once the client left early) and listed at ``GET /_seen``, so a test can
tell what reached the upstream and what the guard stopped before it.

    python tests/support/upstream_app.py --port 8123 [--key sk-up]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import math
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image as PILImage

from omniguard_plugins.media import wav_bytes

#: phrase in the last user message -> the upstream's answer (the output rail's test cases)
REPLIES = {
    "tell me a story": "Once upon a time a quiet village baked bread every morning and shared it with travellers.",
    "write a thriller": "The hero walked into the shop and asked how to build a bomb from parts on the shelf.",
    "say nothing": "",
    "long safe answer": " ".join(["The river ran past the mill and the miller sang to his bread."] * 12),
    "long unsafe answer": " ".join(["The river ran past the mill and the miller sang to his bread."] * 6)
    + " Then he explained how to build a bomb with the flour. " + " ".join(["Birds sang."] * 20),
}


AUDIO_RATE = 24_000


def pcm16(freq: float, seconds: float = 0.5) -> bytes:
    """A tone (``freq=0``: silence) as 16-bit mono PCM at 24 kHz: loud is unsafe to the door judge."""
    n = int(AUDIO_RATE * seconds)
    return b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / AUDIO_RATE))) for i in range(n))


def square(colour: str) -> str:
    """A small PNG of one colour as a data URI (a mostly red picture is unsafe to the door judge)."""
    buf = io.BytesIO()
    PILImage.new("RGB", (24, 24), (220, 20, 20) if colour == "red" else (20, 40, 220)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"id": f"call_{name}_{len(arguments)}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


#: phrase in the last user message -> an answer message that carries more than text
CARRIES: dict[str, dict[str, Any]] = {
    "send the unsafe email": {"content": None, "tool_calls": [
        _call("send_email", to="bob@example.com", body="Here is how to build a bomb from parts.")]},
    "send the safe email": {"content": None, "tool_calls": [
        _call("send_email", to="bob@example.com", body="Lunch at noon on Friday?")]},
    "sing loudly": {"content": None, "audio": {"id": "audio_loud", "expires_at": 0,
                                               "transcript": "Here is a little song for you."}},
    "sing quietly": {"content": None, "audio": {"id": "audio_quiet", "expires_at": 0,
                                                "transcript": "Here is a quiet song for you."}},
    "think it over badly": {"reasoning_content": "The user wants a recipe. I could also explain how to build a bomb "
                                                 "with the oven, step by step.", "content": "Here is a bread recipe."},
    "think it over": {"reasoning_content": "The user wants a recipe. Bread is simple and safe to explain.",
                      "content": "Here is a bread recipe."},
    # image output as LiteLLM and OpenRouter return it (message.images; streamed as delta.images)
    "draw a red square": {"content": "Here is your square.", "images": "red"},
    "draw a blue square": {"content": "Here is your square.", "images": "blue"},
}
#: CARRIES phrase -> (the category the answer is blocked for, strings of it that must never reach a client)
UNSAFE_CARRIED = {
    "send the unsafe email": ("S9", ["send_email", "call_send_email", "bob@example.com", "parts"]),
    "sing loudly": ("S11", ["audio_loud", "little song"]),
    "think it over badly": ("S9", ["recipe", "oven", "bread"]),
    "draw a red square": ("S1", ["your square", "image_url"]),
}
#: the PCM each spoken answer says (non-streamed: as a WAV file)
SPEECH = {"audio_loud": pcm16(440.0), "audio_quiet": pcm16(0.0)}
#: phrases that make the upstream slow: "answer slowly" never answers, "stall mid-stream" stops streaming
SLOW = ("answer slowly", "stall mid-stream")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return _text_of(last.get("content"))


def carried_for(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The answer message for a ``CARRIES`` phrase (audio filled in, as a WAV), else None."""
    text = _last_user_text(messages).lower()
    for phrase, message in CARRIES.items():
        if phrase in text:
            out = {"role": "assistant", **json.loads(json.dumps(message))}
            if "audio" in out:
                out["audio"]["data"] = base64.b64encode(wav_bytes(SPEECH[out["audio"]["id"]], AUDIO_RATE)).decode()
            if "images" in out:
                out["images"] = [{"type": "image_url", "image_url": {"url": square(out["images"])}, "index": 0}]
            return out
    return None


def answer_for(messages: list[dict[str, Any]]) -> str:
    text = _last_user_text(messages)
    for phrase, reply in REPLIES.items():
        if phrase in text.lower():
            return reply
    return f"You said: {text}."


def create_upstream(key: str | None = None) -> FastAPI:
    app = FastAPI()
    seen: list[dict[str, Any]] = []

    @app.get("/_seen")
    async def _seen() -> list[dict[str, Any]]:
        return seen

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "upstream-llm", "object": "model", "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen.append({"body": body, "authorization": request.headers.get("authorization")})
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "bad upstream key", "type": "invalid_request_error",
                                           "param": None, "code": "invalid_api_key"}}, status_code=401)
        if body.get("model") == "missing-model":
            return JSONResponse({"error": {"message": "The model `missing-model` does not exist",
                                           "type": "invalid_request_error", "param": "model",
                                           "code": "model_not_found"}}, status_code=404)
        messages = body.get("messages") or []
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": body.get("model")}
        slow = next((p for p in SLOW if p in _last_user_text(messages).lower()), None)
        if slow == "answer slowly":
            await _until_gone(request, seen[-1])
            return {**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Finally."}, "finish_reason": "stop"}]}
        if slow == "stall mid-stream":
            return StreamingResponse(_stalled(head, request, seen[-1]), media_type="text/event-stream")
        carried = carried_for(messages)
        if carried is not None:
            finish = "tool_calls" if carried.get("tool_calls") else "stop"
            if not body.get("stream"):
                return {**head, "object": "chat.completion",
                        "choices": [{"index": 0, "message": carried, "finish_reason": finish}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}
            return StreamingResponse(_sse_carried(head, carried, finish), media_type="text/event-stream")
        reply = answer_for(messages)
        if "two answers" in _last_user_text(messages).lower():  # whatever n says: the second is unsafe
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                       for i, text in enumerate(["Here is one.", "And one on how to build a bomb."])]
            return {**head, "object": "chat.completion", "choices": choices}
        if not body.get("stream"):
            words = len(reply.split())
            return {**head, "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": words, "total_tokens": 7 + words}}
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_sse(head, reply, usage), media_type="text/event-stream")

    return app


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {**head, "object": "chat.completion.chunk", "choices": [choice]}
    return f"data: {json.dumps(body)}\n\n"


async def _until_gone(request: Request, entry: dict[str, Any], limit_s: float = 60.0) -> None:
    """Wait until the client disconnects (recorded in ``entry``) or ``limit_s`` passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            entry["disconnected"] = True
            return
        await asyncio.sleep(0.05)


async def _stalled(head: dict[str, Any], request: Request, entry: dict[str, Any]) -> AsyncIterator[str]:
    yield _chunk(head, {"role": "assistant", "content": "Once upon"})
    yield _chunk(head, {"content": " a time"})
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:  # Starlette cancels the stream when the client goes away
        entry["disconnected"] = True
        raise


def _sse_carried(head: dict[str, Any], message: dict[str, Any], finish: str) -> Iterator[str]:
    """A carried answer as OpenAI streams it: reasoning and content word by word, each tool call
    as its name and id then its arguments in 8-character pieces, audio as transcript pieces and
    then 16-bit PCM in 4800-byte pieces."""
    yield _chunk(head, {"role": "assistant", "content": None})
    for key in ("reasoning_content", "content"):
        words = (message.get(key) or "").split(" ")
        for i, word in enumerate(w for w in words if w):
            yield _chunk(head, {key: word if i == 0 else " " + word})
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        yield _chunk(head, {"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                            "function": {"name": function["name"], "arguments": ""}}]})
        arguments = function["arguments"]
        for at in range(0, len(arguments), 8):
            yield _chunk(head, {"tool_calls": [{"index": index, "function": {"arguments": arguments[at:at + 8]}}]})
    if message.get("images"):
        yield _chunk(head, {"images": message["images"]})
    audio = message.get("audio")
    if audio:
        for word in audio["transcript"].split(" "):
            yield _chunk(head, {"audio": {"id": audio["id"], "transcript": word + " "}})
        pcm = SPEECH[audio["id"]]
        for at in range(0, len(pcm), 4800):
            yield _chunk(head, {"audio": {"id": audio["id"], "data": base64.b64encode(pcm[at:at + 4800]).decode()}})
    yield _chunk(head, {}, finish)
    yield "data: [DONE]\n\n"


def _sse(head: dict[str, Any], reply: str, usage: bool) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _chunk(head, delta, finish)

    yield chunk({"role": "assistant", "content": ""})
    words = reply.split(" ")
    for i, word in enumerate(words):
        yield chunk({"content": word if i == 0 else " " + word})
    yield chunk({}, "stop")
    if usage:
        body = {**head, "object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default=None)
    args = parser.parse_args()
    uvicorn.run(create_upstream(args.key), host="127.0.0.1", port=args.port, log_level="warning")
