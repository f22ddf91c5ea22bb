"""The guarded gateway (``omniguard serve --upstream``) in front of a small upstream LLM, both
real processes on loopback, driven by the official ``openai`` client."""

from __future__ import annotations

import httpx
import openai
import pytest
from door_helpers import UPSTREAM_KEY, seen, start_guard
from door_media import BLUE, RED, audio_part, image_part, text_part
from serve_helpers import TOKEN, free_port
from upstream_app import REPLIES


@pytest.fixture(scope="module")
def gateway(upstream):
    server = start_guard("--backend-factory", "door_backends:doors", "--upstream", f"{upstream.url}/v1",
                         "--upstream-key", UPSTREAM_KEY, token=TOKEN)
    yield server
    server.stop()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=TOKEN, max_retries=0)


def user(content):
    return [{"role": "user", "content": content}]


def test_a_safe_exchange_passes_with_its_verdicts(client, upstream):
    raw = client.chat.completions.with_raw_response.create(model="upstream-llm", messages=user("tell me a story"))
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLIES["tell me a story"]
    assert completion.choices[0].finish_reason == "stop" and completion.usage.total_tokens > 0
    assert raw.headers["x-omniguard-input"] == "safe" and raw.headers["x-omniguard-output"] == "safe"
    verdicts = completion.model_extra["omniguard"]
    assert verdicts["input"]["label"] == "safe" and verdicts["output"]["label"] == "safe"
    last = seen(upstream)[-1]
    assert last["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the gateway's own key, never the client's token
    assert last["body"]["messages"] == user("tell me a story") and last["body"]["model"] == "upstream-llm"


def test_an_unsafe_request_never_reaches_the_upstream(client, upstream):
    before = len(seen(upstream))
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="upstream-llm", messages=user("how do I build a bomb"))
    assert err.value.code == "content_filter" and "S9" in err.value.message
    assert err.value.response.headers["x-omniguard-input"] == "unsafe; S9"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="upstream-llm", messages=user("bomb"), stream=True)
    assert len(seen(upstream)) == before


def test_every_modality_of_the_request_is_judged(client, upstream):
    before = len(seen(upstream))
    for part in (image_part(RED), audio_part(440.0)):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="upstream-llm", messages=user([text_part("look"), part]))
    assert len(seen(upstream)) == before
    ok = client.chat.completions.create(model="upstream-llm",
                                        messages=user([text_part("tell me a story"), image_part(BLUE)]))
    assert ok.choices[0].message.content == REPLIES["tell me a story"]


def test_an_unsafe_answer_is_withheld(client):
    raw = client.chat.completions.with_raw_response.create(model="upstream-llm", messages=user("write a thriller"))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "content_filter" and choice.message.content is None
    assert "S9" in choice.message.refusal and "bomb" not in choice.message.refusal
    assert raw.headers["x-omniguard-input"] == "safe" and raw.headers["x-omniguard-output"] == "unsafe; S9"


def test_an_empty_answer_has_nothing_to_judge(client):
    raw = client.chat.completions.with_raw_response.create(model="upstream-llm", messages=user("say nothing"))
    completion = raw.parse()
    assert completion.choices[0].message.content == "" and completion.choices[0].finish_reason == "stop"
    assert completion.model_extra["omniguard"]["output"] is None and "x-omniguard-output" not in raw.headers
    chunks = list(client.chat.completions.create(model="upstream-llm", messages=user("say nothing"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["omniguard"]["output"] is None


def test_a_safe_stream_arrives_whole_with_the_verdicts_on_its_last_chunk(client):
    chunks = list(client.chat.completions.create(model="upstream-llm", messages=user("long safe answer"),
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLIES["long safe answer"]
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].model_extra["omniguard"]["output"]["label"] == "safe"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_a_blocked_stream_shows_nothing_unjudged_and_ends_with_an_error(client):
    answer = REPLIES["long unsafe answer"]
    shown = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in client.chat.completions.create(model="upstream-llm", messages=user("long unsafe answer"),
                                                    stream=True):
            shown += "".join(c.delta.content or "" for c in chunk.choices)
    assert "blocked" in err.value.message and "S9" in err.value.message
    assert err.value.body["code"] == "content_filter"
    assert answer.startswith(shown) and "bomb" not in shown


def test_the_stream_error_event_carries_the_verdicts(gateway):
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=gateway.headers, timeout=30,
                      json={"model": "upstream-llm", "stream": True, "messages": user("write a thriller")}) as r:
        assert r.headers["x-omniguard-input"] == "safe"
        events = [line for line in r.iter_lines() if line.startswith("data:")]
    assert "[DONE]" not in events[-1] and '"content_filter"' in events[-1]
    assert '"output": {"label": "unsafe", "categories": ["S9"]' in events[-1]


async def test_the_async_client_streams_through_the_gateway(gateway):
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=TOKEN, max_retries=0)
    stream = await client.chat.completions.create(model="upstream-llm", messages=user("tell me a story"),
                                                  stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == REPLIES["tell me a story"]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="upstream-llm", messages=user("kill"))
    await client.close()


def test_the_judge_model_keeps_its_meaning(client, upstream):
    before = len(seen(upstream))
    verdict = client.chat.completions.create(model="omniguard-judge", messages=user("a bomb please"))
    assert verdict.choices[0].message.content == "unsafe\nS9"
    assert client.chat.completions.create(model="omniguard-judge", messages=user("hi")).choices[0].message.content == "safe"
    assert len(seen(upstream)) == before


def test_upstream_errors_are_openai_errors(client, gateway):
    with pytest.raises(openai.NotFoundError) as err:  # the client's to fix: kept as the upstream said it
        client.chat.completions.create(model="missing-model", messages=user("hello"))
    assert err.value.code == "model_not_found" and "missing-model" in err.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="upstream-llm", messages=user("hello"), n=2)


def test_a_wrong_upstream_key_and_a_dead_upstream_are_502s(upstream):
    wrong = start_guard("--backend-factory", "door_backends:doors", "--upstream", f"{upstream.url}/v1",
                        "--upstream-key", "sk-wrong")
    dead = start_guard("--backend-factory", "door_backends:doors", "--upstream",
                       f"http://127.0.0.1:{free_port()}/v1")
    try:
        for server, code in ((wrong, "upstream_auth"), (dead, "upstream_unreachable")):
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
            for stream in (False, True):
                with pytest.raises(openai.InternalServerError) as err:
                    client.chat.completions.create(model="upstream-llm", messages=user("hello"), stream=stream)
                assert err.value.status_code == 502 and err.value.code == code
    finally:
        wrong.stop()
        dead.stop()
