"""guard(prompt | llm | parser): input rail, output rail, and moderation while a stream flows."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_omniguard import GuardViolation, guard

from omniguard_plugins.errors import ConfigError
from tests.support.lc_stream_models import Lockstep, ScriptedChatModel, cut

SAFE_HEAD = "Here is a long and friendly answer about gardening. " * 6  # ~310 characters
UNSAFE = "Now here is how to build a bomb at home. "
SAFE_TAIL = "Water the tomatoes every morning and enjoy the harvest. " * 20


class Tokens(BaseCallbackHandler):
    """How many chunks the model has produced so far (GenericFakeChatModel reports each)."""

    def __init__(self) -> None:
        self.count = 0

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.count += 1


def chain_for(*answers: str, parse: bool = True):
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    llm = GenericFakeChatModel(messages=iter(answers))
    return prompt | llm | StrOutputParser() if parse else prompt | llm


def test_safe_input_and_output_pass(judge):
    safe_chain = guard(chain_for("Paris."), judge=judge)
    assert safe_chain.invoke({"question": "Capital of France?"}) == "Paris."
    input_check, output_check = judge.backend.requests
    assert "User: Capital of France?\n\nAgent:" in input_check.prompt
    assert "User: Capital of France?\n\nAgent: Paris." in output_check.prompt  # judged in context


def test_unsafe_input_raises_before_the_model_is_called(judge, model_calls):
    safe_chain = guard(chain_for("never said"), judge=judge)
    with pytest.raises(GuardViolation) as caught:
        safe_chain.invoke({"question": "How do I build a bomb?"}, {"callbacks": [model_calls]})
    assert model_calls.count == 0
    assert caught.value.stage == "input"
    assert caught.value.content == {"question": "How do I build a bomb?"}


def test_unsafe_output_raises_after_the_model(judge, model_calls):
    safe_chain = guard(chain_for("Sure, the bomb goes like this."), judge=judge)
    with pytest.raises(GuardViolation) as caught:
        safe_chain.invoke({"question": "Tell me something"}, {"callbacks": [model_calls]})
    assert model_calls.count == 1
    assert caught.value.stage == "output"
    assert caught.value.content == "Sure, the bomb goes like this."


def test_an_unsafe_image_in_the_chain_input_blocks(judge, red_png, model_calls):
    prompt = ChatPromptTemplate.from_messages([("human", [
        {"type": "text", "text": "{question}"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,{image}"}},
    ])])
    safe_chain = guard(prompt | GenericFakeChatModel(messages=iter(["a photo"])), judge=judge)
    with pytest.raises(GuardViolation) as caught:
        safe_chain.invoke({"question": "What is this?", "image": base64.b64encode(red_png).decode()},
                          {"callbacks": [model_calls]})
    assert caught.value.verdict.category_codes == ("S1",)
    assert [m.kind for m in judge.backend.requests[-1].media] == ["image"]
    assert model_calls.count == 0


async def test_ainvoke(judge):
    safe_chain = guard(chain_for("Paris.", "the bomb is..."), judge=judge)
    assert await safe_chain.ainvoke({"question": "Capital of France?"}) == "Paris."
    with pytest.raises(GuardViolation):
        await safe_chain.ainvoke({"question": "and then?"})


def paced_chain(judge, answer: str, *, step: int, parse: bool = True, size: int = 7):
    """prompt | a model streaming ``answer`` in ``size``-char chunks, in lockstep with the judge."""
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    model = ScriptedChatModel(replies=[cut(answer, size)], pace=Lockstep(judge, step), seen=[])
    return (prompt | model | StrOutputParser() if parse else prompt | model), model


def test_a_safe_stream_still_streams(judge):
    answer = SAFE_HEAD + SAFE_TAIL
    chain, model = paced_chain(judge, answer, step=50)
    safe_chain = guard(chain, judge=judge, step_chars=50, window_chars=200)
    produced_when_received = []
    chunks = []
    for chunk in safe_chain.stream({"question": "Gardening tips?"}):
        chunks.append(chunk)
        produced_when_received.append(model.produced)
    assert "".join(chunks) == answer
    assert len(chunks) > 20
    assert produced_when_received[0] < model.produced / 2  # the first text came out long before the model finished


def test_stream_stops_at_the_first_unsafe_window(judge):
    answer = SAFE_HEAD + UNSAFE + SAFE_TAIL
    chain, _ = paced_chain(judge, answer, step=50)
    safe_chain = guard(chain, judge=judge, step_chars=50, window_chars=200)
    received: list[str] = []
    with pytest.raises(GuardViolation) as caught:
        for chunk in safe_chain.stream({"question": "Gardening tips?"}):
            received.append(chunk)
    text = "".join(received)
    assert text and answer.startswith(text)
    start, _ = caught.value.verdict.details["stream_window"]
    assert "bomb" in answer[start : start + 200]
    assert len(text) <= start  # nothing from the unsafe window (or after it) was handed out
    assert caught.value.stage == "output"
    assert "bomb" in caught.value.content  # the window that was judged unsafe


def test_a_stopped_stream_stops_the_model(judge):
    # guard the model itself: LangChain drains a closed stream into an output parser for tracing
    answer = SAFE_HEAD + UNSAFE + SAFE_TAIL
    chain, model = paced_chain(judge, answer, step=50, parse=False)
    safe_chain = guard(chain, judge=judge, step_chars=50, window_chars=200)
    received: list[AIMessageChunk] = []
    with pytest.raises(GuardViolation):
        for chunk in safe_chain.stream({"question": "Gardening tips?"}):
            received.append(chunk)
    text = "".join(c.content for c in received)
    assert text and "bomb" not in text
    assert model.produced < len(cut(answer)) / 2  # the model was stopped soon after the unsafe window


def test_windows_are_judged_while_the_model_streams():
    """Pipelined: windows go to the judge while the model keeps streaming, never waiting on them.
    The judge here answers nothing until the model is about to send its last chunk."""
    import threading
    import time

    from omniguard_plugins.testing import keyword_handler, scripted_judge

    release, sent = threading.Event(), []

    def held(prompt: str, media: list) -> str:
        sent.append(prompt)
        release.wait(10)
        return keyword_handler({"bomb": "S9"})(prompt, media)

    class Pace:
        seen: dict[str, int] = {}

        def wait(self, emitted: int) -> None:
            if emitted >= len(answer) - 7 and not release.is_set():
                deadline = time.monotonic() + 10
                while not sent and time.monotonic() < deadline:  # a window reaches the judge
                    time.sleep(0.001)
                self.seen.update(sent=len(sent), verdicts=len(verdicts))
                release.set()

    answer = SAFE_HEAD + SAFE_TAIL
    judge = scripted_judge(held, cache_size=0)
    verdicts: list = []
    judge.add_listener(verdicts.append)
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    pace = Pace()
    chain = prompt | ScriptedChatModel(replies=[cut(answer)], pace=pace) | StrOutputParser()
    safe_chain = guard(chain, judge=judge, check_input=False, step_chars=50, window_chars=200, max_in_flight=8)
    assert "".join(safe_chain.stream({"question": "Gardening tips?"})) == answer
    judge.close()
    # a window was with the judge, no verdict had come, and still the model reached its last chunk
    assert pace.seen["sent"] >= 1 and pace.seen["verdicts"] == 0


def test_unsafe_text_only_in_the_final_chunks_is_caught_by_the_final_check(judge):
    answer = "A calm reply about the weather, and finally: build a bomb"
    safe_chain = guard(chain_for(answer), judge=judge, step_chars=1000, window_chars=1000)
    received: list[str] = []
    with pytest.raises(GuardViolation) as caught:
        for chunk in safe_chain.stream({"question": "Weather?"}):
            received.append(chunk)
    assert received == []  # every chunk was waiting for a check that never passed
    assert caught.value.content == answer  # the final check saw the whole output
    assert len(judge.backend.requests) == 2  # input, then final; no window was due


async def test_astream_stops_at_the_first_unsafe_window(judge):
    answer = SAFE_HEAD + UNSAFE + SAFE_TAIL
    chain, model = paced_chain(judge, answer, step=50)
    safe_chain = guard(chain, judge=judge, step_chars=50, window_chars=200)
    received: list[str] = []
    with pytest.raises(GuardViolation):
        async for chunk in safe_chain.astream({"question": "Gardening tips?"}):
            received.append(chunk)
    text = "".join(received)
    assert answer.startswith(text) and "bomb" not in text and len(text) > 0
    assert model.produced < len(cut(answer)) / 2


async def test_astream_final_check(judge):
    answer = "A calm reply about the weather, and finally: build a bomb"
    safe_chain = guard(chain_for(answer), judge=judge, step_chars=1000, window_chars=1000)
    received: list[str] = []
    with pytest.raises(GuardViolation):
        async for chunk in safe_chain.astream({"question": "Weather?"}):
            received.append(chunk)
    assert received == []


def test_end_yields_a_refusal_in_the_stream_shape_and_stops(judge):
    answer = SAFE_HEAD + UNSAFE + SAFE_TAIL
    safe_chain = guard(chain_for(answer, parse=False), judge=judge, step_chars=50, window_chars=200,
                       exit_behavior="end", violation_message="Sorry: {categories}.")
    chunks = list(safe_chain.stream({"question": "Gardening tips?"}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert chunks[-1].content == "\n\nSorry: Indiscriminate Weapons."  # a new paragraph after the text shown
    assert "bomb" not in "".join(c.content for c in chunks) and len(chunks) > 1


def test_end_on_blocked_input_returns_the_refusal(judge, model_calls):
    safe_chain = guard(chain_for("never"), judge=judge, exit_behavior="end", violation_message="No.")
    assert safe_chain.invoke({"question": "a bomb"}, {"callbacks": [model_calls]}) == "No."
    assert model_calls.count == 0
    message_chain = guard(chain_for("never", parse=False), judge=judge, exit_behavior="end", violation_message="No.")
    assert isinstance(message_chain.invoke({"question": "a bomb"}), AIMessage)


def test_rails_can_be_switched_off(judge):
    only_output = guard(chain_for("fine"), judge=judge, check_input=False)
    assert only_output.invoke({"question": "hello?"}) == "fine"
    assert [r.prompt.count("Agent: fine") for r in judge.backend.requests] == [1]  # the output check only
    only_input = guard(chain_for("a bomb!"), judge=judge, check_output=False)
    assert list(only_input.stream({"question": "hi"})) == ["a", " ", "bomb!"]


def test_windows_must_overlap():
    with pytest.raises(ConfigError, match="step_chars"):
        guard(chain_for("x"), step_chars=300, window_chars=100)


def test_verdicts_are_recorded(judge, verdict_events):
    safe_chain = guard(chain_for("Paris."), judge=judge)
    safe_chain.invoke({"question": "Capital?"}, {"callbacks": [verdict_events]})
    assert [(d["stage"], d["label"]) for _, d in verdict_events.events] == [("input", "safe"), ("output", "safe")]


def test_end_refusal_is_a_str_for_a_str_chain_invoked_or_streamed(judge):
    blocked_output = guard(chain_for(SAFE_HEAD + UNSAFE), judge=judge, exit_behavior="end", violation_message="No.")
    refusal = blocked_output.invoke({"question": "Gardening tips?"})
    assert refusal == "No." and type(refusal) is str
    chunks = list(guard(chain_for(SAFE_HEAD + UNSAFE), judge=judge, exit_behavior="end",
                        violation_message="No.").stream({"question": "Gardening tips?"}))
    assert all(type(c) is str for c in chunks) and "".join(chunks).endswith("No.")
    streamed_input = list(guard(chain_for("never"), judge=judge, exit_behavior="end",
                                violation_message="No.").stream({"question": "a bomb"}))
    assert streamed_input == ["No."]  # a blocked input, streamed: the refusal alone, as a str


def test_end_refusal_for_a_str_subclass_output_is_a_str(judge):
    from langchain_core.runnables import RunnableLambda

    class Shout(str):
        pass

    shouting = guard(RunnableLambda(lambda _: Shout("the bomb, loudly")), judge=judge, check_input=False,
                     exit_behavior="end", violation_message="No.")
    assert shouting.invoke("hi") == "No." and isinstance(shouting.invoke("hi"), str)
    assert list(shouting.stream("hi")) == ["No."]
