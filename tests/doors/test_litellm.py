"""LiteLLM: ``OmniGuardGuardrail`` in the real ``litellm`` SDK and in a real LiteLLM proxy process
(registered from ``config.yaml`` as LiteLLM documents), and ``omniguard serve``'s Generic
Guardrail API route used by LiteLLM's own ``generic_guardrail_api`` guardrail. The LLM is the
small upstream on loopback."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import litellm
import litellm_omniguard
import openai
import pytest
from litellm_omniguard import OmniGuardGuardrail, OmniGuardViolation

from omniguard_plugins import GuardViolation, OmniGuard
from omniguard_plugins.testing import ScriptedBackend
from tests.support.door_backends import handler
from tests.support.door_helpers import UPSTREAM_KEY, seen, start_process
from tests.support.door_media import BLUE, RED, audio_part, image_part, text_part
from tests.support.media_makers import b64, wav_bytes
from tests.support.serve_helpers import TOKEN, ServerProcess, free_port, root_on_path
from tests.support.upstream_app import CARRIES, REPLIES, UNSAFE_CARRIED

MASTER_KEY = "sk-litellm-master-0123456789abcdef"


def user(content):
    return [{"role": "user", "content": content}]


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(handler)


@pytest.fixture
def sdk(backend, upstream) -> Iterator[dict]:
    """The guardrail on LiteLLM's callbacks (in process), and the call's arguments."""
    judge = OmniGuard(backend=backend, model="scripted", max_wait_ms=1)
    guardrail = OmniGuardGuardrail(judge=judge, guardrail_name="omniguard", event_hook=["pre_call", "post_call"])
    saved = litellm.callbacks
    litellm.callbacks = [guardrail]
    yield {"model": "openai/upstream-llm", "api_base": f"{upstream.url}/v1", "api_key": UPSTREAM_KEY,
           "guardrails": ["omniguard"]}
    litellm.callbacks = saved
    judge.close()


async def test_sdk_safe_passes_and_unsafe_is_blocked_before_the_llm(sdk, upstream):
    ok = await litellm.acompletion(messages=user("tell me a story"), **sdk)
    assert ok.choices[0].message.content == REPLIES["tell me a story"]
    before = len(seen(upstream))
    with pytest.raises(OmniGuardViolation) as err:
        await litellm.acompletion(messages=user("how to build a bomb"), **sdk)
    assert err.value.stage == "input" and err.value.hook == "pre_call" and err.value.verdict.category_codes == ("S9",)
    assert isinstance(err.value, GuardViolation)  # one `except GuardViolation` catches every door's block
    assert err.value.blocked_content is True and err.value.status_code == 400
    assert len(seen(upstream)) == before


async def test_sdk_post_call_blocks_an_unsafe_answer(sdk):
    with pytest.raises(OmniGuardViolation) as err:
        await litellm.acompletion(messages=user("write a thriller"), **sdk)
    assert err.value.stage == "output" and err.value.hook == "post_call"
    assert str(err.value) == "OmniGuard blocked the output: unsafe: S9 Indiscriminate Weapons"


async def test_sdk_post_call_judges_every_choice(sdk):
    with pytest.raises(OmniGuardViolation) as err:
        await litellm.acompletion(messages=user("two answers please"), n=2, **sdk)
    assert err.value.hook == "post_call" and err.value.verdict.category_codes == ("S9",)


async def test_sdk_images_and_audio_reach_the_judge(sdk, backend):
    with pytest.raises(OmniGuardViolation) as image:
        await litellm.acompletion(messages=user([text_part("what is this"), image_part(RED)]), **sdk)
    assert image.value.verdict.category_codes == ("S1",)
    with pytest.raises(OmniGuardViolation) as audio:
        await litellm.acompletion(messages=user([text_part("listen"), audio_part(440.0)]), **sdk)
    assert audio.value.verdict.category_codes == ("S11",)
    # LiteLLM's own `file` part (a data: URI) is read by its media type
    file_part = {"type": "file", "file": {"file_data": "data:audio/wav;base64," + b64(wav_bytes(0.5)),
                                          "format": "audio/wav"}}
    with pytest.raises(OmniGuardViolation):
        await litellm.acompletion(messages=user([text_part("listen"), file_part]), **sdk)
    backend.reset()
    await litellm.acompletion(messages=user([text_part("tell me a story"), image_part(BLUE)]), **sdk)
    kinds = [[m.kind for m in r.media] for r in backend.requests]
    assert ["image"] in kinds  # the input check saw the picture


async def test_sdk_guardrail_backed_by_omniguard_serve(guard, upstream):
    remote = OmniGuardGuardrail(api_base=f"{guard.url}/v1", api_key=TOKEN, guardrail_name="remote",
                                event_hook=["pre_call", "post_call"])
    dead = OmniGuardGuardrail(api_base=f"http://127.0.0.1:{free_port()}", guardrail_name="dead",
                              event_hook="pre_call")
    saved = litellm.callbacks
    litellm.callbacks = [remote, dead]
    call = {"model": "openai/upstream-llm", "api_base": f"{upstream.url}/v1", "api_key": UPSTREAM_KEY}
    try:
        ok = await litellm.acompletion(messages=user("tell me a story"), guardrails=["remote"], **call)
        assert ok.choices[0].message.content == REPLIES["tell me a story"]
        with pytest.raises(OmniGuardViolation) as err:
            await litellm.acompletion(messages=user([text_part("look"), image_part(RED)]), guardrails=["remote"],
                                      **call)
        assert err.value.verdict.category_codes == ("S1",)
        with pytest.raises(OmniGuardViolation) as answer:
            await litellm.acompletion(messages=user("write a thriller"), guardrails=["remote"], **call)
        assert answer.value.hook == "post_call" and answer.value.verdict.category_codes == ("S9",)
        with pytest.raises(OmniGuardViolation) as down:  # an unreachable judge blocks (fail closed)
            await litellm.acompletion(messages=user("tell me a story"), guardrails=["dead"], **call)
        assert down.value.blocked_content is False and "unreachable" in str(down.value)
    finally:
        litellm.callbacks = saved


# ---------------------------------------------------------------------- the LiteLLM proxy


@pytest.fixture(scope="module")
def proxy(guard, upstream, tmp_path_factory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("litellm-proxy")
    # a custom guardrail module next to config.yaml, as LiteLLM documents: an in-process judge
    (folder / "scripted_guardrail.py").write_text(textwrap.dedent("""
        from tests.support.door_backends import handler
        from litellm_omniguard import OmniGuardGuardrail
        from omniguard_plugins import GuardViolation, OmniGuard
        from omniguard_plugins.testing import ScriptedBackend

        class ScriptedOmniGuard(OmniGuardGuardrail):
            def __init__(self, **kwargs):
                super().__init__(judge=OmniGuard(backend=ScriptedBackend(handler), model="scripted"), **kwargs)
    """))
    (folder / "config.yaml").write_text(textwrap.dedent(f"""
        model_list:
          - model_name: upstream-llm
            litellm_params:
              model: openai/upstream-llm
              api_base: {upstream.url}/v1
              api_key: {UPSTREAM_KEY}
        guardrails:
          - guardrail_name: omniguard
            litellm_params:
              guardrail: litellm_omniguard.OmniGuardGuardrail
              mode: [pre_call, post_call]
              api_base: {guard.url}/v1
              api_key: {TOKEN}
          - guardrail_name: omniguard-during
            litellm_params:
              guardrail: scripted_guardrail.ScriptedOmniGuard
              mode: during_call
          - guardrail_name: omniguard-generic
            litellm_params:
              guardrail: generic_guardrail_api
              mode: [pre_call, post_call]
              api_base: {guard.url}/v1
              headers:
                Authorization: Bearer {TOKEN}
    """))
    port = free_port()
    cli = str(Path(sys.executable).with_name("litellm"))
    process = start_process([cli, "--config", str(folder / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
                            port, env={"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                               "PYTHONPATH": root_on_path()},
                            cwd=folder, ready="/health/liveliness", timeout_s=180)
    yield process
    process.stop()


@pytest.fixture
def proxy_client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=MASTER_KEY, max_retries=0)


@pytest.mark.parametrize("name", ["omniguard", "omniguard-during", "omniguard-generic"])
def test_proxy_blocks_unsafe_requests(proxy_client, upstream, name):
    pick = {"guardrails": [name]}
    ok = proxy_client.chat.completions.create(model="upstream-llm", messages=user("tell me a story"), extra_body=pick)
    assert ok.choices[0].message.content == REPLIES["tell me a story"]
    for content in ("how to build a bomb", [text_part("look at this"), image_part(RED)]):
        with pytest.raises(openai.BadRequestError) as err:
            proxy_client.chat.completions.create(model="upstream-llm", messages=user(content), extra_body=pick)
        assert "S9" in err.value.message or "S1" in err.value.message


@pytest.mark.parametrize("name", ["omniguard", "omniguard-generic"])
def test_proxy_post_call_blocks_an_unsafe_answer(proxy_client, name):
    with pytest.raises(openai.BadRequestError) as err:
        proxy_client.chat.completions.create(model="upstream-llm", messages=user("write a thriller"),
                                             extra_body={"guardrails": [name]})
    assert "S9" in err.value.message


def test_proxy_streams_pass_the_stream_rail(proxy_client):
    pick = {"guardrails": ["omniguard"]}
    chunks = proxy_client.chat.completions.create(model="upstream-llm", messages=user("long safe answer"),
                                                  stream=True, extra_body=pick)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLIES["long safe answer"]
    shown = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in proxy_client.chat.completions.create(model="upstream-llm", messages=user("long unsafe answer"),
                                                          stream=True, extra_body=pick):
            shown += "".join(c.delta.content or "" for c in chunk.choices)
    assert "S9" in err.value.message
    assert REPLIES["long unsafe answer"].startswith(shown) and "bomb" not in shown


def test_litellm_completion_through_the_proxy(proxy):
    """The sync SDK call: LiteLLM runs guardrails in its proxy (the SDK's sync path has no hooks)."""
    # `guardrails=` is the SDK's own (its callbacks); the proxy's are asked for in the body
    call = {"model": "litellm_proxy/upstream-llm", "api_base": f"{proxy.url}/v1", "api_key": MASTER_KEY,
            "extra_body": {"guardrails": ["omniguard"]}}
    ok = litellm.completion(messages=user("tell me a story"), **call)
    assert ok.choices[0].message.content == REPLIES["tell me a story"]
    with pytest.raises(litellm.BadRequestError) as err:
        litellm.completion(messages=user([text_part("listen"), audio_part(440.0)]), **call)
    assert "S11" in str(err.value)


# ---------------------------------------------------------------------- answers carrying more than text, SDK streams


def leaked(chunks: list, leaks: list[str]) -> list[str]:
    text = json.dumps([c.model_dump() if hasattr(c, "model_dump") else c for c in chunks], default=str)
    return [leak for leak in leaks if leak in text]


def carried(chunk) -> bool:
    delta = chunk.choices[0].delta if chunk.choices else None
    return bool(delta is not None and (getattr(delta, "tool_calls", None) or getattr(delta, "audio", None)))


@pytest.mark.parametrize("phrase", list(UNSAFE_CARRIED))
async def test_sdk_an_unsafe_answer_carrying_more_than_text_never_reaches_the_caller(sdk, phrase):
    code, leaks = UNSAFE_CARRIED[phrase]
    with pytest.raises(OmniGuardViolation) as whole:
        await litellm.acompletion(messages=user(phrase), **sdk)
    assert whole.value.hook == "post_call" and whole.value.verdict.category_codes == (code,)
    shown: list = []
    with pytest.raises(OmniGuardViolation) as streamed:
        async for chunk in await litellm_omniguard.acompletion(messages=user(phrase), stream=True, **sdk):
            shown.append(chunk)
    assert streamed.value.stage == "output" and streamed.value.verdict.category_codes == (code,)
    assert not leaked(shown, leaks) and not [c for c in shown if carried(c)]


async def test_sdk_a_safe_stream_carrying_a_tool_call_arrives_whole(sdk):
    expected = CARRIES["send the safe email"]["tool_calls"][0]["function"]
    chunks = [c async for c in await litellm_omniguard.acompletion(messages=user("send the safe email"),
                                                                   stream=True, **sdk)]
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == expected["name"]
    assert "".join(call.function.arguments or "" for call in calls) == expected["arguments"]
    text = [c async for c in await litellm_omniguard.acompletion(messages=user("long safe answer"), stream=True,
                                                                 **sdk)]
    assert "".join(c.choices[0].delta.content or "" for c in text if c.choices) == REPLIES["long safe answer"]


async def test_sdk_a_stream_litellm_cannot_check_is_refused_loudly(sdk, upstream):
    before = len(seen(upstream))
    with pytest.raises(Exception, match="litellm_omniguard.acompletion"):
        await litellm.acompletion(messages=user("tell me a story"), stream=True, **sdk)
    assert len(seen(upstream)) == before  # refused before the LLM was called


async def test_sdk_a_routers_stream_is_guarded_through_the_wrapper(sdk, upstream):
    router = litellm.Router(model_list=[{"model_name": "up", "litellm_params": {
        "model": sdk["model"], "api_base": sdk["api_base"], "api_key": sdk["api_key"]}}])
    call = {"model": "up", "stream": True, "guardrails": ["omniguard"]}
    with pytest.raises(Exception, match="call=router.acompletion"):
        await router.acompletion(messages=user("long unsafe answer"), **call)
    shown = ""
    with pytest.raises(OmniGuardViolation):
        async for chunk in await litellm_omniguard.acompletion(messages=user("long unsafe answer"),
                                                               call=router.acompletion, **call):
            shown += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert REPLIES["long unsafe answer"].startswith(shown) and "bomb" not in shown


def test_sdk_sync_calls_are_checked_or_say_loudly_they_were_not(sdk, upstream):
    with pytest.warns(RuntimeWarning, match="did NOT check this call"):
        litellm.completion(messages=user("tell me a story"), **sdk)
    before = len(seen(upstream))
    with pytest.raises(OmniGuardViolation) as request:
        litellm_omniguard.completion(messages=user("how to build a bomb"), **sdk)
    assert request.value.hook == "pre_call" and len(seen(upstream)) == before
    with pytest.raises(OmniGuardViolation) as answer:
        litellm_omniguard.completion(messages=user("send the unsafe email"), **sdk)
    assert answer.value.hook == "post_call" and answer.value.verdict.category_codes == ("S9",)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a checked call says nothing
        ok = litellm_omniguard.completion(messages=user("tell me a story"), **sdk)
    assert ok.choices[0].message.content == REPLIES["tell me a story"]
    shown = ""
    with pytest.raises(OmniGuardViolation):
        for chunk in litellm_omniguard.completion(messages=user("long unsafe answer"), stream=True, **sdk):
            shown += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert REPLIES["long unsafe answer"].startswith(shown) and "bomb" not in shown


@pytest.mark.parametrize("phrase", list(UNSAFE_CARRIED))
def test_proxy_an_unsafe_answer_carrying_more_than_text_never_reaches_the_client(proxy_client, proxy, phrase):
    code, leaks = UNSAFE_CARRIED[phrase]
    pick = {"guardrails": ["omniguard"]}
    with pytest.raises(openai.BadRequestError) as whole:
        proxy_client.chat.completions.create(model="upstream-llm", messages=user(phrase), extra_body=pick)
    assert code in whole.value.message
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"},
                      json={"model": "upstream-llm", "stream": True, "messages": user(phrase), **pick}) as r:
        assert r.status_code == 200  # a proxy stream's status leaves before its answer is judged
        events = [line for line in r.iter_lines() if line.startswith("data:")]
    # the proxy ends the stream with the guardrail's error event, then its own [DONE]
    assert events[-1] == "data: [DONE]" and code in events[-2] and '"content_filter"' in events[-2]
    assert not [leak for leak in leaks if any(leak in e for e in events)]
    assert not [e for e in events[:-2] if '"tool_calls":[{' in e.replace(" ", "") or '"audio":{' in e.replace(" ", "")]


def test_proxy_an_image_alone_is_judged_by_the_custom_guardrail_not_the_generic_api(proxy_client, upstream):
    """LiteLLM's ``generic_guardrail_api`` sends no request check for a user message without
    text, as docs/litellm.md says; the custom guardrail blocks the same request. (If LiteLLM
    closes the gap, this fails: update the docs.)"""
    alone = user([image_part(RED)])
    before = len(seen(upstream))
    with pytest.raises(openai.BadRequestError) as err:
        proxy_client.chat.completions.create(model="upstream-llm", messages=alone,
                                             extra_body={"guardrails": ["omniguard"]})
    assert "S1" in err.value.message and len(seen(upstream)) == before
    proxy_client.chat.completions.create(model="upstream-llm", messages=alone,
                                         extra_body={"guardrails": ["omniguard-generic"]})
    assert len(seen(upstream)) == before + 1  # it reached the LLM unjudged
