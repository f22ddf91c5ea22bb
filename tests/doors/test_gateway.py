"""The guarded gateway (``omniguard serve --upstream``) in front of a small upstream LLM, both
real processes on loopback, driven by the official ``openai`` client and raw SSE. It judges
everything an upstream answer carries before the client sees it: text, tool calls, spoken audio
(a WAV whole; 16-bit PCM pieces with their transcript when streamed) and ``reasoning_content``."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import openai
import pytest

from tests.support.door_helpers import UPSTREAM_KEY, seen, start_guard
from tests.support.door_media import BLUE, RED, audio_part, image_part, text_part
from tests.support.serve_helpers import TOKEN, free_port
from tests.support.upstream_app import CARRIES, REPLIES, SPEECH, UNSAFE_CARRIED

UNSAFE = UNSAFE_CARRIED


@pytest.fixture(scope="module")
def gateway(upstream):
    server = start_guard("--backend-factory", "tests.support.door_backends:doors", "--upstream", f"{upstream.url}/v1",
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
    last = json.loads(events[-1].removeprefix("data:"))
    assert last["error"]["message"] == "OmniGuard blocked the output: unsafe: S9 Indiscriminate Weapons"
    output = last["omniguard"]["output"]
    assert output["label"] == "unsafe" and output["categories"] == ["S9"] and output["stage"] == "output"
    assert last["omniguard"]["input"]["label"] == "safe"


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
    plain = client.chat.completions.create(model="omniguard-judge", messages=user("hi"))
    assert plain.choices[0].message.content == "safe"
    assert len(seen(upstream)) == before


def test_more_answers_than_asked_for_are_refused(client):
    with pytest.raises(openai.InternalServerError) as err:  # n=1 was asked: a second answer would go unjudged
        client.chat.completions.create(model="upstream-llm", messages=user("two answers please"))
    assert err.value.status_code == 502 and "2 choices" in err.value.message


def test_upstream_errors_are_openai_errors(client, gateway):
    with pytest.raises(openai.NotFoundError) as err:  # the client's to fix: kept as the upstream said it
        client.chat.completions.create(model="missing-model", messages=user("hello"))
    assert err.value.code == "model_not_found" and "missing-model" in err.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="upstream-llm", messages=user("hello"), n=2)


def test_a_wrong_upstream_key_and_a_dead_upstream_are_502s(upstream):
    wrong = start_guard("--backend-factory", "tests.support.door_backends:doors", "--upstream", f"{upstream.url}/v1",
                        "--upstream-key", "sk-wrong")
    dead = start_guard("--backend-factory", "tests.support.door_backends:doors", "--upstream",
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


# ---------------------------------------------------------------------- answers carrying more than text


def sse(gateway, phrase: str) -> list[str]:
    """The data of every SSE event the client receives for a streamed ``phrase``."""
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=gateway.headers, timeout=30,
                      json={"model": "upstream-llm", "stream": True, "messages": user(phrase)}) as r:
        assert r.status_code == 200 and r.headers["x-omniguard-input"] == "safe"
        return [line.removeprefix("data:").strip() for line in r.iter_lines() if line.startswith("data:")]


@pytest.mark.parametrize("phrase", list(UNSAFE))
def test_an_unsafe_answer_carrying_more_than_text_is_withheld_whole(client, phrase):
    code, leaks = UNSAFE[phrase]
    raw = client.chat.completions.with_raw_response.create(model="upstream-llm", messages=user(phrase))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "content_filter" and choice.message.content is None
    assert choice.message.tool_calls is None and choice.message.audio is None
    assert "reasoning_content" not in (choice.message.model_extra or {})
    assert choice.message.refusal.startswith("OmniGuard blocked the output: unsafe: " + code)
    assert raw.headers["x-omniguard-output"] == f"unsafe; {code}"
    body = raw.http_response.text
    assert not [leak for leak in leaks if leak in body]


@pytest.mark.parametrize("phrase", list(UNSAFE))
def test_an_unsafe_answer_carrying_more_than_text_never_streams(gateway, phrase):
    code, leaks = UNSAFE[phrase]
    events = sse(gateway, phrase)
    shown, last = events[:-1], json.loads(events[-1])
    assert last["error"]["code"] == "content_filter" and last["omniguard"]["output"]["categories"] == [code]
    assert not [leak for leak in leaks if any(leak in event for event in events)]
    # nothing of a tool call or of the audio, not even the first piece with its name or id
    assert not [e for e in shown if '"tool_calls"' in e or '"audio"' in e]


def test_a_safe_tool_call_arrives_whole(client, gateway):
    expected = CARRIES["send the safe email"]["tool_calls"][0]
    raw = client.chat.completions.with_raw_response.create(model="upstream-llm", messages=user("send the safe email"))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls" and raw.headers["x-omniguard-output"] == "safe"
    assert choice.message.tool_calls[0].function.arguments == expected["function"]["arguments"]
    events = sse(gateway, "send the safe email")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["delta"].get("tool_calls") for c in chunks if c.get("choices")]
    calls = [call for piece in pieces if piece for call in piece]
    assert calls[0]["id"] == expected["id"] and calls[0]["function"]["name"] == "send_email"
    assert "".join(c["function"]["arguments"] for c in calls) == expected["function"]["arguments"]
    finishing = next(c for c in chunks if c.get("omniguard"))
    assert finishing["choices"][0]["finish_reason"] == "tool_calls"
    assert finishing["omniguard"]["output"]["label"] == "safe"


def test_a_safe_spoken_answer_arrives_with_its_output_verdict(client, gateway):
    raw = client.chat.completions.with_raw_response.create(model="upstream-llm", messages=user("sing quietly"))
    completion = raw.parse()
    audio = completion.choices[0].message.audio
    assert audio.transcript == CARRIES["sing quietly"]["audio"]["transcript"] and audio.data
    assert completion.choices[0].message.content is None
    # an audio-only answer is judged: its verdict is in the body and the header
    assert raw.headers["x-omniguard-output"] == "safe"
    assert completion.model_extra["omniguard"]["output"]["label"] == "safe"
    events = sse(gateway, "sing quietly")
    chunks = [json.loads(e) for e in events[:-1]]
    pcm = b"".join(base64.b64decode(c["choices"][0]["delta"]["audio"]["data"]) for c in chunks
                   if c.get("choices") and "data" in (c["choices"][0]["delta"].get("audio") or {}))
    assert pcm == SPEECH["audio_quiet"] and events[-1] == "[DONE]"
    assert next(c for c in chunks if c.get("omniguard"))["omniguard"]["output"]["label"] == "safe"


def test_safe_reasoning_arrives_whole(client, gateway):
    message = client.chat.completions.create(model="upstream-llm", messages=user("think it over")).choices[0].message
    assert message.model_extra["reasoning_content"] == CARRIES["think it over"]["reasoning_content"]
    chunks = [json.loads(e) for e in sse(gateway, "think it over")[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == CARRIES["think it over"]["reasoning_content"]
    assert "".join(d.get("content") or "" for d in deltas) == CARRIES["think it over"]["content"]


# ---------------------------------------------------------------------- a slow upstream


@pytest.fixture(scope="module", params=["--request-timeout", "--upstream-timeout"])
def impatient(upstream, request):
    """A gateway whose requests answer 504 after 2 s, the upstream too: by ``--request-timeout``,
    or by the gateway's own ``--upstream-timeout`` under a long request timeout."""
    deadline = (["--request-timeout", "2"] if request.param == "--request-timeout"
                else ["--request-timeout", "120", "--upstream-timeout", "2"])
    server = start_guard("--backend-factory", "tests.support.door_backends:doors", "--upstream", f"{upstream.url}/v1",
                         "--upstream-key", UPSTREAM_KEY, *deadline, token=TOKEN)
    yield server
    server.stop()


def upstream_saw_the_client_go(upstream, phrase: str) -> bool:
    """Whether the upstream recorded that the request for ``phrase`` was dropped (waits up to 10 s
    for it to notice)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [s for s in seen(upstream) if phrase in json.dumps(s["body"]["messages"])]
        if mine and all(s.get("disconnected") for s in mine):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_upstream_is_a_504_and_is_cancelled(impatient, upstream, stream):
    phrase = f"answer slowly ({'streamed' if stream else 'whole'})"
    client = openai.OpenAI(base_url=f"{impatient.url}/v1", api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="upstream-llm", messages=user(phrase), stream=stream)
    assert err.value.status_code == 504 and err.value.code == "upstream_timeout"
    assert err.value.body["type"] == "timeout_error" and "did not answer within" in err.value.message
    assert upstream_saw_the_client_go(upstream, phrase)


def test_a_stream_that_stalls_ends_with_an_error_event_and_is_cancelled(impatient, upstream):
    with httpx.stream("POST", f"{impatient.url}/v1/chat/completions", headers=impatient.headers, timeout=30,
                      json={"model": "upstream-llm", "stream": True, "messages": user("stall mid-stream")}) as r:
        assert r.status_code == 200
        events = [line.removeprefix("data:").strip() for line in r.iter_lines() if line.startswith("data:")]
    last = json.loads(events[-1])
    assert last["error"]["code"] == "upstream_timeout" and last["error"]["type"] == "timeout_error"
    assert "stopped streaming" in last["error"]["message"] and "[DONE]" not in events
    # what the upstream said before it stalled was never covered by a safe window: not shown
    assert not [e for e in events[:-1] if "Once upon" in e]
    assert upstream_saw_the_client_go(upstream, "stall mid-stream")


def test_the_gateway_lists_the_upstreams_models(client):
    models = client.models.list()
    assert [(m.id, m.owned_by) for m in models.data] == [("upstream-llm", "test"), ("omniguard-judge", "omniguard")]


def test_a_safe_picture_in_an_answer_arrives(client, gateway):
    answer = client.chat.completions.create(model="upstream-llm", messages=user("draw a blue square"))
    message = answer.choices[0].message
    assert message.content == "Here is your square."
    assert message.model_extra["images"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    chunks = [json.loads(e) for e in sse(gateway, "draw a blue square")[:-1]]
    assert [c for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("images")]


def test_chats_waiting_on_their_upstream_do_not_fill_the_judges_admission(upstream):
    """Twelve chats hang on a slow upstream (their input checks done) in front of a judge of
    250 ms batches of 2 (admission room: a few batches, 4-6 requests): a check and a new chat
    still get in, because a request waiting on its upstream has no model work coming."""
    server = start_guard("--backend-factory", "tests.support.reliability_backends:burst", "--max-batch", "2",
                         "--upstream", f"{upstream.url}/v1", "--upstream-key", UPSTREAM_KEY)
    phrase = f"answer slowly (admission {time.monotonic_ns()})"

    async def scenario() -> tuple[int, int, int]:
        body = json.dumps({"model": "upstream-llm", "messages": user(phrase)}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        hanging = []
        for opened in range(1, 13):  # one after another, as chats come in: each is judged, then waits upstream
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(head + body)
            hanging.append(writer)
            deadline = time.monotonic() + 10
            while sum(phrase in json.dumps(s["body"]["messages"]) for s in seen(upstream)) < opened:
                assert time.monotonic() < deadline, f"chat {opened} did not reach the upstream"
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            in_flight = (await client.get("/healthz")).json()["admission"]["in_flight"]
            guard = await client.post("/v1/guard", json={"messages": user("hello")})
            chat = await client.post("/v1/chat/completions",
                                     json={"model": "upstream-llm", "messages": user("tell me a story")})
        for writer in hanging:
            writer.close()
        return in_flight, guard.status_code, chat.status_code

    try:
        in_flight, guard_status, chat_status = asyncio.run(scenario())
        assert in_flight == 12  # the chats hold their places...
        assert guard_status == 200 and chat_status == 200  # ...but not the model's time
        assert upstream_saw_the_client_go(upstream, phrase)
    finally:
        server.stop()
