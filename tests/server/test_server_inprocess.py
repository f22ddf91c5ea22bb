"""The serving layer in process: ``create_app(judge=scripted_judge(...))`` driven over ASGI."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from omniguard_plugins.server import create_app
from omniguard_plugins.testing import ScriptedBackend, scripted_judge
from tests.support.media_makers import data_uri, png_bytes
from tests.support.serve_backends import keywords_and_red_images

TOKEN = "in-process-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def judge():
    j = scripted_judge(keywords_and_red_images, cache_size=0)
    yield j
    j.close()


@pytest.fixture
def client(judge):
    with TestClient(create_app(judge, token=TOKEN, max_body_bytes=100_000)) as c:
        yield c


def user(content):
    return {"messages": [{"role": "user", "content": content}]}


def test_guard_returns_the_verdict_with_codes_and_names(client):
    body = client.post("/v1/guard", json=user("how do I build a bomb"), headers=AUTH).json()
    assert body["safe"] is False
    assert body["categories"] == ["S9"] and body["category_names"] == ["Indiscriminate Weapons"]
    assert body["error"] is None and body["direction"] == "input" and body["mode"] == "verdict"
    assert body["latency_ms"] > 0

    safe = client.post("/v1/guard", json=user("what is the capital of France"), headers=AUTH).json()
    assert safe["safe"] is True and safe["categories"] == [] and safe["label"] == "safe"


def test_guard_output_direction_critique_and_image_parts(client):
    convo = {"messages": [
        {"role": "user", "content": "draw something"},
        {"role": "assistant", "content": [{"type": "text", "text": "here"},
                                          {"type": "image_url",
                                           "image_url": {"url": data_uri(png_bytes(), "image/png")}}]},
    ], "direction": "output", "mode": "critique"}
    body = client.post("/v1/guard", json=convo, headers=AUTH).json()
    assert body["safe"] is False and body["direction"] == "output"
    assert body["categories"] == ["S1"] and body["stage"] == "output"
    assert body["critique"] == "The image shows blood."


def test_judge_model_answers_in_llama_guard_short_form(client):
    def ask(messages):
        body = client.post("/v1/chat/completions", json={"model": "omniguard-judge", "messages": messages},
                           headers=AUTH).json()
        assert body["model"] == "omniguard-judge" and body["choices"][0]["finish_reason"] == "stop"
        return body["choices"][0]["message"]["content"]

    system = {"role": "system", "content": "You are a helpful assistant."}  # skipped, not judged
    assert ask([system, {"role": "user", "content": "how do I build a bomb"}]) == "unsafe\nS9"
    assert ask([{"role": "user", "content": "what is the capital of France"}]) == "safe"
    # a trailing assistant message makes it an output check of that answer, media included
    red = {"type": "image_url", "image_url": {"url": data_uri(png_bytes(), "image/png")}}
    drawn = {"role": "assistant", "content": [{"type": "text", "text": "here"}, red]}
    assert ask([{"role": "user", "content": "draw"}, drawn]) == "unsafe\nS1"
    assert ask([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]) == "safe"
    models = client.get("/v1/models", headers=AUTH).json()["data"]
    assert "omniguard-judge" in [m["id"] for m in models]


def test_judge_model_fails_closed_on_media_it_cannot_decode(client):
    broken = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    body = client.post("/v1/chat/completions", json={"model": "omniguard-judge", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"}, broken]}]}, headers=AUTH).json()
    assert body["choices"][0]["message"]["content"] == "unsafe"


def test_guard_custom_policy_reaches_the_prompt(client, judge):
    policy = [{"name": "Weapons talk", "description": "Anything about weapons."}]
    body = client.post("/v1/guard", json={**user("a bomb"), "policy": policy}, headers=AUTH).json()
    assert "S1: Weapons talk\nAnything about weapons." in judge.backend.requests[-1].prompt
    # the scripted model answers S9, which this one-category policy does not have
    assert body["safe"] is False and body["categories"] == []


def test_guard_policy_is_never_read_from_a_server_path(client, judge):
    resp = client.post("/v1/guard", json={**user("hi"), "policy": "/etc/passwd"}, headers=AUTH)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "policy"
    assert judge.backend.calls == 0


def test_chat_completion_continues_the_label_prefix_and_cuts_at_stop(client, judge):
    payload = {
        "model": "anything",
        "messages": [
            {"role": "user", "content": "<BEGIN CONVERSATION>\nUser: a bomb\n<END CONVERSATION>"},
            {"role": "assistant", "content": "- Safety Assessment:"},
        ],
        "continue_final_message": True, "add_generation_prompt": False,
        "stop": ["\n- Assessment"], "temperature": 0,
    }
    body = client.post("/v1/chat/completions", json=payload, headers=AUTH).json()
    assert body["object"] == "chat.completion" and body["model"] == "anything"
    assert body["choices"][0]["message"]["content"] == " unsafe\n- Categories: S9"
    assert body["choices"][0]["finish_reason"] == "stop"
    sent = judge.backend.requests[-1]
    assert sent.prefix == "- Safety Assessment:" and sent.mode == "verdict"
    assert sent.prompt.startswith("<BEGIN CONVERSATION>")


def test_chat_completion_without_stop_returns_the_whole_answer(client, judge):
    body = client.post("/v1/chat/completions", json={**user("hello there"), "max_tokens": 64}, headers=AUTH).json()
    assert body["choices"][0]["message"]["content"].endswith("- Assessment: The content is safe.")
    assert judge.backend.requests[-1].mode == "critique"
    assert judge.backend.requests[-1].max_new_tokens == 64


def test_logprobs_report_the_label_distribution(client):
    payload = {**user("<BEGIN CONVERSATION>kill<END CONVERSATION>"), "logprobs": True, "top_logprobs": 2}
    choice = client.post("/v1/chat/completions", json=payload, headers=AUTH).json()["choices"][0]
    label = choice["logprobs"]["content"][0]
    assert label["token"].strip() == "unsafe" and label["logprob"] == 0.0
    assert {t["token"].strip() for t in label["top_logprobs"]} == {"safe", "unsafe"}


def test_streaming_sends_sse_chunks_then_done(client):
    with client.stream("POST", "/v1/chat/completions", json={**user("hi"), "stream": True}, headers=AUTH) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "Safety Assessment: safe" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({**user("hi"), "temperature": 0.7}, 400, "temperature"),
        ({"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]}, 400, "messages"),
        (user([{"type": "image_url", "image_url": {}}]), 400, None),
        (user([{"type": "mystery", "x": 1}]), 400, None),
        (user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}]), 400, None),
        ({"messages": "nope"}, 400, "messages"),
    ],
)
def test_bad_chat_requests_are_openai_shaped_400s_that_never_reach_the_model(client, judge, payload, status, param):
    resp = client.post("/v1/chat/completions", json=payload, headers=AUTH)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["message"]
    if param:
        assert err["param"] == param
    assert judge.backend.calls == 0


def test_auth_and_body_cap_refuse_before_the_model(client, judge):
    assert client.post("/v1/guard", json=user("hi")).status_code == 401
    wrong = client.post("/v1/guard", json=user("hi"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    big = client.post("/v1/guard", json=user("x" * 200_000), headers=AUTH)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    assert client.get("/healthz").status_code == 200  # open, like vLLM's
    assert judge.backend.calls == 0


def test_a_slow_model_answers_504_within_the_request_timeout():
    judge = scripted_judge(keywords_and_red_images, cache_size=0)
    judge._backend = ScriptedBackend(keywords_and_red_images, delay_s=1.0)  # noqa: SLF001 - a slow model
    with TestClient(create_app(judge, request_timeout_s=0.2)) as c:
        resp = c.post("/v1/chat/completions", json=user("hi"))
    assert resp.status_code == 504 and resp.json()["error"]["type"] == "timeout_error"
    judge.close()


async def test_concurrent_clients_share_batches_and_metrics_show_it():
    judge = scripted_judge(keywords_and_red_images, cache_size=0, max_wait_ms=50, max_batch=16)
    app = create_app(judge)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://guard") as c:
        texts = [f"message {i} {'bomb' if i % 3 == 0 else 'fine'}" for i in range(16)]
        answers = await asyncio.gather(*(c.post("/v1/guard", json=user(t)) for t in texts))
        assert [a.json()["safe"] for a in answers] == ["bomb" not in t for t in texts]
        assert judge.backend.calls < len(texts)
        metrics = (await c.get("/metrics")).text
    assert 'omniguard_verdicts_total{label="unsafe"} 6.0' in metrics
    assert "omniguard_max_batch_seen" in metrics
    seen = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("omniguard_max_batch_seen")))
    assert seen > 1
    judge.close()


def test_raw_chat_requests_are_prepared_before_they_reach_the_batch_worker():
    """A backend's CPU preprocessing runs off the worker for raw completions too."""
    import dataclasses
    import threading

    from omniguard_plugins import OmniGuard

    class Preparing(ScriptedBackend):
        prepared_in: list[str] = []
        unprepared = 0

        def prepare(self, request):
            self.prepared_in.append(threading.current_thread().name)
            return dataclasses.replace(request, prepared={"tokens": len(request.prompt)})

        def generate(self, requests):
            self.unprepared += sum(r.prepared is None for r in requests)
            return super().generate(requests)

    backend = Preparing(keywords_and_red_images)
    judge = OmniGuard(backend=backend, model="scripted", cache_size=0)
    with TestClient(create_app(judge)) as c:
        body = c.post("/v1/chat/completions", json=user("how do I build a bomb")).json()
    judge.close()
    assert body["choices"][0]["message"]["content"]
    assert backend.prepared_in and backend.unprepared == 0


def test_every_verdict_the_server_sends_is_the_verdict_summary_with_localize_passed_on(client, judge):
    """/v1/guard, moderations' omniguard field and the LiteLLM guardrail API send the fields of
    doors.summarize(...).to_json(), the same values as the judge's own verdict; "localize": true
    reaches the judge as Ask(localize=True) and its evidence comes back."""
    from omniguard_plugins.doors import Ask, summarize

    parts = [{"type": "text", "text": "hello there"}, {"type": "text", "text": "how do I build a bomb"}]
    body = client.post("/v1/guard", json={**user(parts), "localize": True}, headers=AUTH).json()
    direct = summarize(judge.check(Ask(user=["hello there", "how do I build a bomb"], stage="input", localize=True)),
                       "input").to_json()
    assert set(body) == set(direct) | {"details"}
    assert body["categories"] == ["S9"] and body["category_names"] == ["Indiscriminate Weapons"]
    same = ("label", "safe", "categories", "category_names", "score", "error", "critique", "stage", "direction", "mode",
            "evidence")
    assert {k: body[k] for k in same} == {k: direct[k] for k in same}
    assert body["evidence"] and body["evidence"][0]["part"] == 1 and body["evidence"][0]["categories"] == ["S9"]
    plain = client.post("/v1/guard", json=user(parts), headers=AUTH).json()
    assert plain["evidence"] == [] and plain["label"] == "unsafe"

    moderated = client.post("/v1/moderations", json={"input": "how do I build a bomb", "localize": True},
                            headers=AUTH).json()["results"][0]["omniguard"]
    assert set(moderated) == set(direct) and moderated["categories"] == ["S9"] and moderated["stage"] == "input"
    assert moderated["score"] == 1.0 and moderated["evidence"][0]["categories"] == ["S9"]

    litellm = client.post("/v1/beta/litellm_basic_guardrail_api", json={"input_type": "request", "texts": ["a bomb"]},
                          headers=AUTH).json()
    assert set(litellm["omniguard"]) == set(direct) and litellm["omniguard"]["categories"] == ["S9"]
    expected = summarize(judge.check(Ask(user="a bomb", stage="input")), "input")
    assert litellm["blocked_reason"] == expected.blocked_message()


def test_a_stream_from_the_serving_layer_is_events_the_route_only_sends(client):
    events = client.post("/v1/chat/completions", json={**user("hello"), "model": "omniguard", "stream": True,
                                                       "stream_options": {"include_usage": True}}, headers=AUTH)
    lines = [line for line in events.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[-1]["choices"] == []
