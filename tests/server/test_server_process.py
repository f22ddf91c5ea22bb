"""A real ``omniguard serve`` process on loopback, driven by the official ``openai`` client."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.support.media_makers import b64, data_uri, png_bytes, wav_bytes
from tests.support.serve_helpers import TOKEN, start_server


@pytest.fixture(scope="module")
def echo_server():
    server = start_server("--backend-factory", "tests.support.serve_backends:echo", "--max-batch", "16",
                          "--max-wait-ms", "20", token=TOKEN, delay_s=0.05)
    yield server
    server.stop()


def test_openai_client_gets_a_completion_for_text_image_and_audio(echo_server):
    client = openai.OpenAI(base_url=f"{echo_server.url}/v1", api_key=TOKEN)
    completion = client.chat.completions.create(
        model="omniguard",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "is this ok?"},
            {"type": "image_url", "image_url": {"url": data_uri(png_bytes(size=(32, 24)), "image/png")}},
            {"type": "input_audio", "input_audio": {"data": b64(wav_bytes(1.0)), "format": "wav"}},
        ]}],
        max_tokens=128,
        temperature=0,
    )
    text = completion.choices[0].message.content
    assert text.startswith("- Safety Assessment: safe")
    assert "echo[is this ok?]" in text
    assert "media[image 32x24 red; audio 1.00s]" in text  # both decoded by the server, in order
    assert completion.model == "omniguard"


def test_openai_client_streams(echo_server):
    client = openai.OpenAI(base_url=f"{echo_server.url}/v1", api_key=TOKEN)
    stream = client.chat.completions.create(
        model="omniguard", messages=[{"role": "user", "content": "stream me"}], stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "echo[stream me]" in text


async def test_64_concurrent_clients_each_get_their_own_answer_in_shared_batches(echo_server):
    client = openai.AsyncOpenAI(base_url=f"{echo_server.url}/v1", api_key=TOKEN, max_retries=0)

    async def ask(i: int) -> str:
        done = await client.chat.completions.create(
            model="omniguard", messages=[{"role": "user", "content": f"request-{i:03d}"}], max_tokens=64,
        )
        return done.choices[0].message.content

    answers = await asyncio.gather(*(ask(i) for i in range(64)))
    for i, answer in enumerate(answers):
        assert f"echo[request-{i:03d}]" in answer
    await client.close()

    metrics = echo_server.metrics()
    assert metrics["omniguard_max_batch_seen"] > 1
    assert metrics["omniguard_batch_size_count"] < 64  # fewer batches than requests
    assert metrics["omniguard_batched_requests_total"] >= 64
    assert metrics["omniguard_http_requests_total{code=200,route=/v1/chat/completions}"] >= 64


def test_refused_requests_are_openai_shaped_and_never_reach_the_model(server_factory):
    server = server_factory("--backend-factory", "tests.support.serve_backends:echo", "--max-body-bytes", "50000",
                            token=TOKEN)
    url = f"{server.url}/v1"
    message = [{"role": "user", "content": "hello"}]

    no_token = httpx.post(f"{url}/chat/completions", json={"model": "m", "messages": message})
    assert no_token.status_code == 401
    assert no_token.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).chat.completions.create(model="m", messages=message)
    assert wrong.value.status_code == 401
    assert wrong.value.body["type"] == "authentication_error" and wrong.value.body["code"] == "invalid_api_key"

    client = openai.OpenAI(base_url=url, api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.APIStatusError) as too_big:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x" * 60_000}])
    assert too_big.value.status_code == 413 and too_big.value.body["code"] == "request_too_large"

    malformed = [
        [{"type": "image_url", "image_url": {"url": ""}}],
        [{"type": "input_audio", "input_audio": {"format": "wav"}}],
        [{"type": "hologram", "hologram": {}}],
        [{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}],
    ]
    for parts in malformed:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": parts}])
        assert set(bad.value.body) == {"message", "type", "param", "code"}
        assert bad.value.body["type"] == "invalid_request_error"

    guard = httpx.post(f"{server.url}/v1/guard", headers=server.headers,
                       json={"messages": [{"role": "user", "content": [{"type": "hologram"}]}]})
    assert guard.status_code == 400 and guard.json()["error"]["code"] == "content"

    metrics = server.metrics()
    assert metrics["omniguard_batched_requests_total"] == 0
    assert metrics["omniguard_backend_errors_total"] == 0
    assert metrics["omniguard_http_requests_total{code=401,route=/v1/chat/completions}"] == 2


def test_the_openai_backend_sends_its_api_key_and_does_not_retry_a_refusal(echo_server):
    from omniguard_plugins import JudgeConfig, OmniGuard

    settings = {"backend": "openai", "base_url": echo_server.url, "model": "omniguard", "cache_size": 0}
    with OmniGuard(JudgeConfig.load(**settings, api_key=TOKEN)) as judge:
        verdict = judge.check(user="hello", mode="critique")
        assert verdict.safe and verdict.error is None and "echo[" in verdict.critique
    with OmniGuard(JudgeConfig.load(**settings, api_key="wrong")) as judge:
        verdict = judge.check(user="hello")
        assert not verdict.safe and "HTTP 401" in verdict.error


def test_guard_route_over_http(echo_server):
    resp = httpx.post(f"{echo_server.url}/v1/guard", headers=echo_server.headers,
                      json={"messages": [{"role": "user", "content": "hello"}], "mode": "critique"})
    body = resp.json()
    assert resp.status_code == 200 and body["safe"] is True
    assert body["critique"].startswith("echo[")
