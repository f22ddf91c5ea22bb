"""Property test of the gateway's streamed answers on the core stream rail: random answers with
the trigger at a random place, random chunkings and window settings, each chunk sent as
``content`` or ``reasoning_content`` at random, and sometimes a tool call after the text (its
arguments safe or not). No SSE event carries a byte from an unsafe window or after it, nothing
of an unsafe tool call is shown (not its name, not its id), a block ends the stream with an
OpenAI-shaped error event (no ``[DONE]``), and a safe answer comes out byte-identical with the
output verdict on its finishing chunk. The upstream is an in-process stand-in for ``Upstream``
(the real one is driven over HTTP in ``test_gateway.py``), so thousands of cases run at
scripted speed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniguard_plugins.server.gateway import GatewayServing
from omniguard_plugins.server.serving import GuardServing
from omniguard_plugins.testing import scripted_judge
from tests.support.stream_helpers import answers, check_shown

FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


CALLS = {"safe": '{"to": "bob", "body": "lunch at noon"}', "unsafe": '{"to": "bob", "body": "a bomb kit"}'}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class ChunkedUpstream:
    """Streams the text chunks it is given (each as ``fields[i]``), then the tool call in
    pieces (``call``: None, "safe" or "unsafe"), then a finishing chunk."""

    def __init__(self, chunks: list[str], fields: list[str], call: str | None) -> None:
        self.chunks, self.fields, self.call = chunks, fields, call
        self.closed = False

    async def stream(self, body: dict[str, Any], **timeouts: Any) -> AsyncIterator[dict[str, Any]]:
        async def gen() -> AsyncIterator[dict[str, Any]]:
            try:
                for text, name in zip(self.chunks, self.fields):
                    yield chunk({name: text})
                if self.call:
                    yield chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                                 "function": {"name": "send_email", "arguments": ""}}]})
                    arguments = CALLS[self.call]
                    for at in range(0, len(arguments), 5):
                        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[at:at + 5]}}]})
                yield chunk({}, "tool_calls" if self.call else "stop")
            finally:
                self.closed = True

        return gen()


@pytest.fixture(scope="module")
def judge():
    og = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    yield og
    og.close()


def _run(gateway: GatewayServing) -> list[dict[str, Any] | str]:
    async def collect() -> list[dict[str, Any] | str]:
        reply = await gateway.chat({"model": "m", "stream": True, "messages": [{"role": "user", "content": "Q?"}]})
        assert reply.events is not None
        events: list[dict[str, Any] | str] = []
        async for event in reply.events:
            data = event.removeprefix("data: ").strip()
            events.append(data if data == "[DONE]" else json.loads(data))
        return events

    return asyncio.run(collect())


@FAST
@given(case=answers(), fields=st.lists(st.sampled_from(["content", "reasoning_content"]), min_size=31, max_size=31),
       call=st.sampled_from([None, None, "safe", "unsafe"]))
def test_gateway_stream_shows_only_judged_text(judge, case, fields, call) -> None:
    answer, at, chunks, cfg = case
    upstream = ChunkedUpstream(chunks, fields, call)
    gateway = GatewayServing(GuardServing(judge), upstream, error_event=lambda exc: {"error": {"message": str(exc)}},
                             stream_settings=cfg)
    events = _run(gateway)
    deltas = [e["choices"][0]["delta"] for e in events
              if isinstance(e, dict) and e.get("choices") and not e["choices"][0].get("finish_reason")]
    shown = "".join(d.get("content") or d.get("reasoning_content") or "" for d in deltas)
    calls = [c for d in deltas for c in d.get("tool_calls") or []]
    blocked = any(isinstance(e, dict) and e.get("error", {}).get("code") == "content_filter" for e in events)
    if call == "unsafe" and at is None:  # the text is safe: it may be shown, the call never
        assert blocked and answer.startswith(shown) and not calls
    else:
        check_shown(answer, at, shown, blocked, cfg)
    if blocked:
        assert not calls  # nothing of a tool call before its verdict, not its name or id
    elif call:
        assert calls[0]["id"] == "call_9" and "".join(c["function"]["arguments"] for c in calls) == CALLS[call]
    assert upstream.closed  # a block closes the upstream; a finished stream is closed too
    if blocked:
        assert events[-1] != "[DONE]" and events[-1]["omniguard"]["output"]["label"] == "unsafe"
    else:
        assert events[-1] == "[DONE]"
        finishing = next(e for e in events if isinstance(e, dict) and e.get("omniguard"))
        output = finishing["omniguard"]["output"]
        # the whole answer is judged at the end; whitespace alone (and no call) is nothing to judge
        assert (output["label"] == "safe") if answer.strip() or call else output is None
