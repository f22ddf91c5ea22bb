"""The gateway on the path users run: ``omniguard serve --upstream`` with nothing injected (the
tiny checkpoint as ``--model``, the server building its own judge), the *first* calls async
through the official client, streamed and whole: the real checkpoint's verdicts decide."""

from __future__ import annotations

import openai
import pytest

from tests.support.door_helpers import UPSTREAM_KEY, start_guard
from tests.support.serve_helpers import TOKEN
from tests.support.upstream_app import REPLIES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(upstream, tiny_checkpoint_path):
    server = start_guard("--model", str(tiny_checkpoint_path), "--upstream", f"{upstream.url}/v1",
                         "--upstream-key", UPSTREAM_KEY, token=TOKEN, timeout_s=240)
    yield server
    server.stop()


def user(content):
    return [{"role": "user", "content": content}]


async def test_first_calls_are_async_and_judged_by_the_checkpoint(gateway):
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=TOKEN, max_retries=0)
    try:
        stream = await client.chat.completions.create(model="upstream-llm", messages=user("tell me a story"),
                                                      stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) \
            == REPLIES["tell me a story"]
        shown = ""
        with pytest.raises(openai.APIError) as blocked:
            async for chunk in await client.chat.completions.create(
                    model="upstream-llm", messages=user("long unsafe answer"), stream=True):
                shown += "".join(c.delta.content or "" for c in chunk.choices)
        assert "S9" in blocked.value.message and "bomb" not in shown
        assert REPLIES["long unsafe answer"].startswith(shown)
        call = await client.chat.completions.create(model="upstream-llm", messages=user("send the unsafe email"))
        assert call.choices[0].finish_reason == "content_filter" and call.choices[0].message.tool_calls is None
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="upstream-llm", messages=user("how do I build a bomb"))
    finally:
        await client.close()
