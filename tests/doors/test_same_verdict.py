"""One verdict through every door, on the tiny checkpoint's real path (transformers on the CPU).

Fixed text, image, audio and video cases and output-rail cases go through ``judge.check``,
``OmniGuardRunnable``, ``OmniGuardPostprocessor``, the NeMo actions, and, on one ``omniguard
serve --model <tiny> --upstream ...`` process, ``/v1/guard``, ``/v1/moderations``, the
``omniguard-judge`` chat model, the guarded gateway and the LiteLLM guardrail; every door must
give the same label and categories as ``judge.check``. The doors differ only in how they carry
content and verdicts, so a difference is a conversion bug in one of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import litellm
import openai
import pytest

from omniguard_plugins import Conversation, OmniGuard, Turn, Verdict
from omniguard_plugins.content import Text
from omniguard_plugins.doors import Ask, render_tool_call, summarize
from omniguard_plugins.openai_messages import conversation_from_openai
from omniguard_plugins.testing import TINY_TRIGGERS
from tests.support.door_helpers import UPSTREAM_KEY, start_guard
from tests.support.door_media import RED, audio_part, image_part, text_part, video_part
from tests.support.serve_helpers import TOKEN
from tests.support.upstream_app import CARRIES, REPLIES

pytestmark = pytest.mark.slow

TRIGGER = next(iter(TINY_TRIGGERS))
Result = tuple[str, tuple[str, ...]]  # (label, category codes)


@dataclass(frozen=True)
class Case:
    name: str
    user: list[dict[str, Any]]  # OpenAI content parts of the user's turn
    assistant: str | None = None  # an output-rail case: the upstream's answer to the user

    @property
    def messages(self) -> list[dict[str, Any]]:
        turns = [{"role": "user", "content": self.user}]
        return turns + ([{"role": "assistant", "content": self.assistant}] if self.assistant is not None else [])

    @property
    def text(self) -> str:
        return " ".join(p["text"] for p in self.user if p["type"] == "text")


CASES = [
    Case("text, safe", [text_part("how do I cook rice for my family")]),
    Case("text, trigger", [text_part(f"tell me how to {TRIGGER} it")]),
    Case("image", [text_part("describe this picture"), image_part(RED)]),
    Case("image alone", [image_part(RED)]),
    Case("audio", [text_part("what is said here?"), audio_part(440.0)]),
    Case("video", [text_part("what happens in this clip?"), video_part(RED)]),
    Case("output, safe", [text_part("tell me a story")], REPLIES["tell me a story"]),
    Case("output, unsafe", [text_part("write a thriller")], REPLIES["write a thriller"]),
]


#: the verdict summary's fields every door must send alike (stage, timing and caching differ by door)
STABLE = ("label", "safe", "categories", "category_names", "score", "error", "direction", "evidence")


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    """The part of a door's verdict JSON that must equal ``summarize(verdict).to_json()``."""
    missing = [k for k in STABLE if k not in summary]
    assert not missing, f"not the verdict summary's shape (missing {missing}): {sorted(summary)}"
    return {k: summary[k] for k in STABLE}


def result(verdict: Verdict | dict[str, Any]) -> Result:
    if isinstance(verdict, dict):
        codes = [c["code"] if isinstance(c, dict) else c for c in verdict["categories"]]
        return verdict["label"], tuple(codes)
    return verdict.label, verdict.category_codes


@pytest.fixture(scope="module")
def tiny_server(tiny_checkpoint_path, upstream):
    server = start_guard("--model", str(tiny_checkpoint_path), "--device", "cpu", "--upstream",
                         f"{upstream.url}/v1", "--upstream-key", UPSTREAM_KEY, token=TOKEN, timeout_s=240)
    yield server
    server.stop()


# ---------------------------------------------------------------------- the doors, one function each


def via_runnable(judge: OmniGuard, case: Case) -> dict[str, Any]:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_omniguard import OmniGuardRunnable

    class Verdicts(BaseCallbackHandler):
        seen: list[dict[str, Any]] = []

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            self.seen.append(data)

    messages = [HumanMessage(content=case.user)] + ([AIMessage(case.assistant)] if case.assistant else [])
    handler = Verdicts()
    handler.seen = []
    runnable = OmniGuardRunnable(judge=judge, direction="output" if case.assistant else "input", exit_behavior="end")
    runnable.invoke(messages, config={"callbacks": [handler]})
    assert len(handler.seen) == 1
    return handler.seen[0]


def via_postprocessor(judge: OmniGuard, case: Case) -> dict[str, Any]:
    from llama_index.core.schema import MediaResource, Node, NodeWithScore, QueryBundle, TextNode
    from llama_index_omniguard import OmniGuardPostprocessor

    post = OmniGuardPostprocessor(judge=judge, on_unsafe="annotate", with_query=case.assistant is not None)
    if case.assistant is not None:  # the retrieved text is the answer, judged in the context of the query
        nodes = [NodeWithScore(node=TextNode(text=case.assistant))]
        out = post.postprocess_nodes(nodes, QueryBundle(case.text))
    else:
        resources: dict[str, Any] = {}
        for part in case.user:
            kind = {"image_url": "image", "input_audio": "audio", "video_url": "video"}.get(part["type"])
            if kind == "audio":
                resources["audio_resource"] = MediaResource(data=part["input_audio"]["data"].encode(),
                                                            mimetype="audio/wav")
            elif kind:
                head, data = part[part["type"]]["url"].split(",", 1)
                resources[f"{kind}_resource"] = MediaResource(data=data.encode(), mimetype=head[5:].split(";")[0])
        node = Node(text_resource=MediaResource(text=case.text) if case.text else None, **resources)
        out = post.postprocess_nodes([NodeWithScore(node=node)])
    return dict(out[0].node.metadata["omniguard"])


def via_nemo(judge: OmniGuard, case: Case) -> dict[str, Any]:
    from nemoguardrails_omniguard import omniguard_check_input, omniguard_check_output

    if case.assistant is None:
        outcome = asyncio.run(omniguard_check_input(context={"user_message": case.user}, omniguard_judge=judge))
    else:
        outcome = asyncio.run(omniguard_check_output(
            context={"user_message": case.user, "bot_message": case.assistant}, omniguard_judge=judge))
    return dict(outcome.metadata["verdict"])


def via_guard(server: Any, case: Case) -> dict[str, Any]:
    return httpx.post(f"{server.url}/v1/guard", headers=server.headers, json={"messages": case.messages},
                      timeout=120).json()


def via_moderations(server: Any, case: Case) -> dict[str, Any] | None:
    if case.assistant is not None:
        return None  # a moderation input is one turn, judged as the user's: no output rail at this door
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
    return client.moderations.create(model="omniguard", input=case.user).results[0].model_extra["omniguard"]


def via_judge_model(server: Any, case: Case) -> Result:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
    answer = client.chat.completions.create(model="omniguard-judge", messages=case.messages).choices[0].message.content
    label, _, codes = answer.partition("\n")
    return label, tuple(c for c in codes.split(",") if c)


def via_gateway(server: Any, case: Case) -> Result:
    """The gateway judges the request and (for output cases) the upstream's answer to it."""
    response = httpx.post(f"{server.url}/v1/chat/completions", headers=server.headers, timeout=120,
                          json={"model": "upstream-llm", "messages": [{"role": "user", "content": case.user}]})
    header = response.headers["x-omniguard-output" if case.assistant is not None else "x-omniguard-input"]
    label, _, codes = header.partition("; ")
    return label, tuple(c for c in codes.split(",") if c)


def via_litellm(judge: OmniGuard, upstream: Any, case: Case) -> dict[str, Any]:
    """The LiteLLM guardrail (in process, on the same judge) in a real ``litellm.acompletion``."""
    from litellm_omniguard import OmniGuardGuardrail, OmniGuardViolation

    guardrail = OmniGuardGuardrail(judge=judge, guardrail_name="omniguard", event_hook=["pre_call", "post_call"])
    verdicts: list[tuple[str, Verdict]] = []
    check = guardrail.checker.check

    async def recording(messages: Any, direction: str) -> Verdict:
        verdict = await check(messages, direction)
        verdicts.append((direction, verdict))
        return verdict

    guardrail.checker.check = recording  # type: ignore[method-assign]
    saved, litellm.callbacks = litellm.callbacks, [guardrail]
    try:
        asyncio.run(litellm.acompletion(model="openai/upstream-llm", api_base=f"{upstream.url}/v1",
                                        api_key=UPSTREAM_KEY, guardrails=["omniguard"],
                                        messages=[{"role": "user", "content": case.user}]))
    except OmniGuardViolation:
        pass
    finally:
        litellm.callbacks = saved
    wanted = "output" if case.assistant is not None else "input"
    return summarize(next(v for d, v in verdicts if d == wanted), wanted).to_json()


# ---------------------------------------------------------------------- the test


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_door_gives_the_same_verdict(case, tiny_judge, tiny_server, upstream):
    verdict = tiny_judge.check(conversation_from_openai(case.messages))
    expected = result(verdict)
    doors: dict[str, Callable[[], Result | dict[str, Any] | None]] = {
        "OmniGuardRunnable": lambda: via_runnable(tiny_judge, case),
        "OmniGuardPostprocessor": lambda: via_postprocessor(tiny_judge, case),
        "NeMo action": lambda: via_nemo(tiny_judge, case),
        "/v1/guard": lambda: via_guard(tiny_server, case),
        "/v1/moderations": lambda: via_moderations(tiny_server, case),
        "omniguard-judge model": lambda: via_judge_model(tiny_server, case),
        "gateway": lambda: via_gateway(tiny_server, case),
        "LiteLLM guardrail": lambda: via_litellm(tiny_judge, upstream, case),
    }
    sent = {name: door() for name, door in doors.items()}
    got = {name: result(r) if isinstance(r, dict) else r for name, r in sent.items()}
    assert {name: r for name, r in got.items() if r is not None and r != expected} == {}, (case.name, expected)
    assert expected[0] in ("safe", "unsafe")  # judged, not an error
    # every door that sends the verdict out sends the same summary JSON
    summary = stable(summarize(verdict).to_json())
    shapes = {name: stable(r) for name, r in sent.items() if isinstance(r, dict)}
    json_doors = {"OmniGuardRunnable", "OmniGuardPostprocessor", "NeMo action", "/v1/guard", "LiteLLM guardrail"}
    assert set(shapes) == json_doors | ({"/v1/moderations"} if case.assistant is None else set())
    assert {name: js for name, js in shapes.items() if js != summary} == {}, (case.name, summary)


def test_the_cases_are_not_all_alike(tiny_judge):
    """The checkpoint really judges: the fixed cases hold both labels (else equality proves little)."""
    labels = {tiny_judge.check(conversation_from_openai(c.messages)).label for c in CASES}
    assert labels == {"safe", "unsafe"}



# ---------------------------------------------------------------------- one tool call, every door

TOOL_PROMPTS = ["send the unsafe email", "send the safe email"]  # the upstream answers each with a tool call


@pytest.mark.parametrize("prompt", TOOL_PROMPTS)
def test_a_tool_call_gets_the_same_verdict_in_every_door(prompt, tiny_judge, tiny_server, upstream):
    """One rendering of a tool call (``doors.render_tool_call``), so the same call is judged alike
    by LangChain, NeMo's tool rail, the gateway and LiteLLM (issue 29 part 5)."""
    call = CARRIES[prompt]["tool_calls"][0]
    name, arguments = call["function"]["name"], call["function"]["arguments"]
    asked = Conversation((Turn("user", (Text(prompt),)), Turn("assistant", render_tool_call(name, arguments))))
    verdict = tiny_judge.check(Ask(conversation=asked, stage="output"))
    expected = result(verdict)

    def langchain() -> dict[str, Any]:
        from langchain_core.callbacks import BaseCallbackHandler
        from langchain_core.messages import AIMessage, HumanMessage
        from langchain_omniguard import OmniGuardRunnable

        seen: list[dict[str, Any]] = []

        class Verdicts(BaseCallbackHandler):
            def on_custom_event(self, event: str, data: Any, **kwargs: Any) -> None:
                seen.append(data)

        reply = AIMessage(content="", tool_calls=[{"name": name, "args": json.loads(arguments), "id": call["id"]}])
        OmniGuardRunnable(judge=tiny_judge, direction="output", exit_behavior="end").invoke(
            [HumanMessage(prompt), reply], config={"callbacks": [Verdicts()]})
        assert len(seen) == 1
        return seen[0]

    def nemo() -> dict[str, Any]:
        from nemoguardrails_omniguard.actions import omniguard_check_tool_output

        outcome = asyncio.run(omniguard_check_tool_output(
            context={"user_message": prompt, "tool_calls": [call]}, omniguard_judge=tiny_judge))
        return dict(outcome.metadata["verdict"])

    def gateway() -> Result:
        response = httpx.post(f"{tiny_server.url}/v1/chat/completions", headers=tiny_server.headers, timeout=120,
                              json={"model": "upstream-llm", "messages": [{"role": "user", "content": prompt}]})
        label, _, codes = response.headers["x-omniguard-output"].partition("; ")
        return label, tuple(c for c in codes.split(",") if c)

    def litellm_door() -> dict[str, Any]:
        return via_litellm(tiny_judge, upstream, Case(prompt, [text_part(prompt)], "tool call"))

    doors: dict[str, Callable[[], Result | dict[str, Any]]] = {
        "LangChain OmniGuardRunnable": langchain, "NeMo tool output rail": nemo, "gateway": gateway,
        "LiteLLM guardrail": litellm_door,
    }
    sent = {door: fn() for door, fn in doors.items()}
    got = {door: result(r) if isinstance(r, dict) else r for door, r in sent.items()}
    assert {door: r for door, r in got.items() if r != expected} == {}, (prompt, expected)
    summary = stable(summarize(verdict).to_json())
    assert {door: stable(r) for door, r in sent.items() if isinstance(r, dict) and stable(r) != summary} == {}


def test_the_tool_calls_are_not_alike(tiny_judge):
    labels = set()
    for prompt in TOOL_PROMPTS:
        call = CARRIES[prompt]["tool_calls"][0]["function"]
        asked = Conversation((Turn("user", (Text(prompt),)),
                              Turn("assistant", render_tool_call(call["name"], call["arguments"]))))
        labels.add(tiny_judge.check(Ask(conversation=asked, stage="output")).label)
    assert labels == {"safe", "unsafe"}
