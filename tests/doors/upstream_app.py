"""A small OpenAI-compatible upstream LLM for gateway and LiteLLM tests (run on 127.0.0.1).

Replies are scripted: ``REPLIES`` maps a phrase in the last user message to the answer; any
other message is answered ``"You said: <text>."``. Streams go word by word. Every request it
receives is recorded (body and Authorization header) and listed at ``GET /_seen``, so a test
can tell what reached the upstream and what the guard stopped before it.

    python tests/doors/upstream_app.py --port 8123 [--key sk-up]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

#: phrase in the last user message -> the upstream's answer (the output rail's test cases)
REPLIES = {
    "tell me a story": "Once upon a time a quiet village baked bread every morning and shared it with travellers.",
    "write a thriller": "The hero walked into the shop and asked how to build a bomb from parts on the shelf.",
    "say nothing": "",
    "long safe answer": " ".join(["The river ran past the mill and the miller sang to his bread."] * 12),
    "long unsafe answer": " ".join(["The river ran past the mill and the miller sang to his bread."] * 6)
    + " Then he explained how to build a bomb with the flour. " + " ".join(["Birds sang."] * 20),
}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def answer_for(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    text = _text_of(last.get("content"))
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
        reply = answer_for(body.get("messages") or [])
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            words = len(reply.split())
            return {**head, "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": words, "total_tokens": 7 + words}}
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_sse(head, reply, usage), media_type="text/event-stream")

    return app


def _sse(head: dict[str, Any], reply: str, usage: bool) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

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
