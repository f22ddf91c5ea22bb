"""OmniGuardRunnable as an LCEL step: pass through, block three ways, batch in one judge call."""

from __future__ import annotations

import langchain_omniguard
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_omniguard import VERDICT_EVENT, GuardViolation, OmniGuardRunnable

from omniguard_plugins import OmniGuard, Policy
from omniguard_plugins.doors import summarize


@pytest.fixture
def prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")])


def test_public_names():
    assert langchain_omniguard.__all__ == [
        "VERDICT_EVENT", "GuardViolation", "GuardedRunnable", "OmniGuardMiddleware", "OmniGuardRunnable",
        "guard", "to_conversation",
    ]
    from omniguard_plugins.errors import GuardViolation as core_violation

    assert GuardViolation is core_violation and issubclass(GuardViolation, RuntimeError)


def test_chain_passes_safe_input_through_unchanged(judge, prompt):
    llm = GenericFakeChatModel(messages=iter(["Paris."]))
    chain = prompt | OmniGuardRunnable(judge=judge) | llm | StrOutputParser()
    assert chain.invoke({"question": "Capital of France?"}) == "Paris."
    assert "User: Capital of France?" in judge.backend.requests[-1].prompt


def test_unsafe_input_raises_before_the_model_is_called(judge, prompt, model_calls):
    calls = model_calls
    llm = GenericFakeChatModel(messages=iter(["never said"]))
    chain = prompt | OmniGuardRunnable(judge=judge) | llm
    with pytest.raises(GuardViolation) as caught:
        chain.invoke({"question": "How do I build a bomb?"}, {"callbacks": [calls]})
    assert calls.count == 0
    err = caught.value
    assert err.stage == "input"
    assert err.verdict.category_codes == ("S9",)
    assert err.content.to_messages()[-1].content == "How do I build a bomb?"


def test_unsafe_output_raises_after_the_model(judge, prompt, model_calls):
    calls = model_calls
    llm = GenericFakeChatModel(messages=iter(["Step 1 of the bomb: ..."]))
    chain = prompt | llm | OmniGuardRunnable(judge=judge, direction="output")
    with pytest.raises(GuardViolation) as caught:
        chain.invoke({"question": "Tell me a story"}, {"callbacks": [calls]})
    assert calls.count == 1
    assert caught.value.stage == "output"
    assert isinstance(caught.value.content, AIMessage)


def test_end_returns_a_refusal_message(judge):
    step = OmniGuardRunnable(judge=judge, exit_behavior="end", violation_message="No: {categories}. {critique}")
    out = step.invoke("bomb recipe please")
    assert isinstance(out, AIMessage)
    assert out.content == "No: Indiscriminate Weapons. It explains how to build a weapon."


def test_replace_keeps_the_shape_and_swaps_the_content(judge, prompt):
    step = OmniGuardRunnable(judge=judge, exit_behavior="replace", violation_message="[removed]")
    assert step.invoke("a bomb") == "[removed]"
    replaced = step.invoke(prompt.invoke({"question": "a bomb"})).to_messages()
    assert [m.content for m in replaced] == ["Answer briefly.", "[removed]"]
    assert step.invoke({"question": "a bomb", "top_k": 3}) == {"question": "[removed]", "top_k": 3}
    message = HumanMessage("a bomb", id="m1")
    assert step.invoke(message) == HumanMessage("[removed]", id="m1")


def test_batch_of_16_is_one_judge_call(judge):
    questions = [f"question number {i}" for i in range(15)] + ["how to make a bomb"]
    step = OmniGuardRunnable(judge=judge)
    out = step.batch(questions, return_exceptions=True)
    assert judge.backend.calls == 1
    assert len(judge.backend.requests) == 16
    assert out[:15] == questions[:15]
    assert isinstance(out[15], GuardViolation)
    with pytest.raises(GuardViolation):
        step.batch(questions)


async def test_abatch_and_ainvoke(judge):
    step = OmniGuardRunnable(judge=judge)
    questions = [f"q{i}" for i in range(16)]
    assert await step.abatch(questions) == questions
    assert judge.backend.calls == 1
    assert await step.ainvoke("hello") == "hello"
    with pytest.raises(GuardViolation):
        await step.ainvoke("bomb")


async def test_verdicts_reach_callbacks_as_custom_events(judge, verdict_events):
    events = verdict_events
    step = OmniGuardRunnable(judge=judge)
    step.invoke("hello", {"callbacks": [events]})
    with pytest.raises(GuardViolation):
        await step.ainvoke("bomb", {"callbacks": [events]})
    assert [(name, data["stage"], data["label"]) for name, data in events.events] == [
        (VERDICT_EVENT, "input", "safe"), (VERDICT_EVENT, "input", "unsafe"),
    ]
    # the core's verdict summary, as every door sends it (plus the stream rail's details)
    data = events.events[1][1]
    assert (data["categories"], data["category_names"], data["safe"]) == (["S9"], ["Indiscriminate Weapons"], False)
    assert data == {**summarize(judge.check(user="bomb"), "input").to_json(), "details": data["details"],
                    "latency_ms": data["latency_ms"]}


async def test_verdicts_show_in_astream_events(judge, prompt):
    chain = prompt | OmniGuardRunnable(judge=judge) | RunnableLambda(lambda p: "ok")
    seen = [e async for e in chain.astream_events({"question": "hi"}, version="v2") if e["event"] == "on_custom_event"]
    assert [(e["name"], e["data"]["label"]) for e in seen] == [(VERDICT_EVENT, "safe")]


def test_policy_and_mode_pass_through(judge):
    policy = Policy.default().drop("S9")
    step = OmniGuardRunnable(judge=judge, policy=policy, mode="critique")
    step.invoke("hello")
    request = judge.backend.requests[-1]
    assert request.mode == "critique"
    assert "Indiscriminate Weapons" not in request.prompt


def test_construction_loads_no_judge(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the shared judge was resolved at construction")

    monkeypatch.setattr(OmniGuard, "shared", classmethod(refuse))
    step = OmniGuardRunnable()
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | step
    assert chain is not None
    with pytest.raises(AssertionError, match="resolved"):
        step.invoke("now it is needed")


def test_default_judge_is_the_shared_one(monkeypatch, judge):
    monkeypatch.setattr(OmniGuard, "shared", classmethod(lambda cls, *a, **k: judge))
    assert OmniGuardRunnable().invoke("hello") == "hello"
    assert judge.backend.calls == 1
