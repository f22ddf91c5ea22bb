"""Property test of the gateway's streamed answers on the core stream rail: random answers with
the trigger at a random place, random chunkings and window settings. No SSE event carries a
byte from an unsafe window or after it, a block ends the stream with an OpenAI-shaped error
event (no ``[DONE]``), and a safe answer comes out byte-identical with the output verdict on
its finishing chunk. The upstream is an in-process stand-in for ``Upstream`` (the real one is
driven over HTTP in ``test_gateway.py``), so thousands of cases run at scripted speed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from omniguard_plugins.server.gateway import GatewayServing
from omniguard_plugins.server.serving import GuardServing
from omniguard_plugins.testing import scripted_judge
from tests.stream_helpers import answers, check_shown

FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ChunkedUpstream:
    """Streams the chunks it is given as ``chat.completion.chunk`` dicts, then a finishing one."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.closed = False

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async def gen() -> AsyncIterator[dict[str, Any]]:
            try:
                for text in self.chunks:
                    yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text},
                                                                           "finish_reason": None}]}
                yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
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
@given(case=answers())
def test_gateway_stream_shows_only_judged_text(judge, case) -> None:
    answer, at, chunks, cfg = case
    upstream = ChunkedUpstream()
    upstream.chunks = chunks
    gateway = GatewayServing(GuardServing(judge), upstream, error_event=lambda exc: {"error": {"message": str(exc)}},
                             stream_settings=cfg)
    events = _run(gateway)
    shown = "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                    if isinstance(e, dict) and e.get("choices") and not e["choices"][0].get("finish_reason"))
    blocked = any(isinstance(e, dict) and e.get("error", {}).get("code") == "content_filter" for e in events)
    check_shown(answer, at, shown, blocked, cfg)
    assert upstream.closed  # a block closes the upstream; a finished stream is closed too
    if blocked:
        assert events[-1] != "[DONE]" and events[-1]["omniguard"]["output"]["label"] == "unsafe"
    else:
        assert events[-1] == "[DONE]"
        finishing = next(e for e in events if isinstance(e, dict) and e.get("omniguard"))
        output = finishing["omniguard"]["output"]
        # the whole answer is judged at the end; whitespace alone is nothing to judge
        assert (output["label"] == "safe") if answer.strip() else output is None
