"""OmniGuardLLM method by method (chat, complete, their streams, the tool-calling methods; sync
and async), media in answers and tool results, and the settings it checks."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from llama_index.core.base.llms.types import AudioBlock, ChatMessage, DocumentBlock, MessageRole, TextBlock
from llama_index.core.llms import MockLLM
from llama_index.core.tools import FunctionTool
from llama_index_omniguard import GuardViolation, OmniGuardLLM

from omniguard_plugins.doors import DEFAULT_REFUSAL
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.media.pcm import wav_bytes
from omniguard_plugins.testing import keyword_handler, scripted_judge
from tests.support.li_agent_models import Script, call, say, stream_of

REFUSAL_S9 = DEFAULT_REFUSAL.format(categories="Indiscriminate Weapons")


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.SYSTEM, content="Be brief."), ChatMessage(role=MessageRole.USER, content=text)]


class Kinds:
    """A scripted judge's handler that also records the media kinds of every check."""

    def __init__(self) -> None:
        self.rule = keyword_handler({"bomb": "S9"}, red_images=True)
        self.media: list[list[str]] = []

    def __call__(self, prompt, media):
        self.media.append([m.kind for m in media])
        return self.rule(prompt, media)


@pytest.fixture
def kinds() -> Kinds:
    return Kinds()


@pytest.fixture
def seeing_judge(kinds):
    guard = scripted_judge(kinds, cache_size=0)
    yield guard
    guard.close()


def wav_b64() -> bytes:
    tone = (0.2 * np.sin(np.linspace(0, 2 * np.pi * 440, 16000))).astype(np.float32)
    return base64.b64encode(wav_bytes(tone, 16000))


# ---------------------------------------------------------------------------- chat and completion


@pytest.mark.parametrize("use_async", [False, True], ids=["chat", "achat"])
async def test_chat_judges_the_question_and_the_answer(judge, use_async):
    script = Script(say("Paris."), say("Step one to build a bomb."))
    guarded = OmniGuardLLM(script.llm(), judge=judge)

    async def chat(messages):
        return await guarded.achat(messages) if use_async else guarded.chat(messages)

    assert str((await chat(user("capital of France?"))).message.content) == "Paris."
    refused = await chat(user("tell me a story"))
    assert refused.message.content == REFUSAL_S9 and refused.additional_kwargs["omniguard"]["stage"] == "output"
    blocked = await chat(user("how do I build a bomb?"))
    assert blocked.message.content == REFUSAL_S9 and blocked.additional_kwargs["omniguard"]["stage"] == "input"
    assert len(script.seen) == 2  # the unsafe question never reached the inner LLM


@pytest.mark.parametrize("use_async", [False, True], ids=["complete", "acomplete"])
async def test_complete_judges_the_prompt_and_the_completion(judge, use_async):
    guarded = OmniGuardLLM(MockLLM(), judge=judge)  # MockLLM echoes the prompt

    async def complete(prompt):
        return await guarded.acomplete(prompt) if use_async else guarded.complete(prompt)

    assert (await complete("hello there")).text == "hello there"
    refused = await complete("a bomb, please")
    assert refused.text == REFUSAL_S9 and refused.additional_kwargs["omniguard"]["stage"] == "input"


async def test_on_unsafe_raise_raises_guard_violation(judge):
    guarded = OmniGuardLLM(Script(say("fine")).llm(), judge=judge, on_unsafe="raise")
    with pytest.raises(GuardViolation) as caught:
        await guarded.achat(user("how to build a bomb"))
    assert caught.value.stage == "input" and caught.value.verdict.category_codes == ("S9",)


# ---------------------------------------------------------------------------- streams


@pytest.mark.parametrize("use_async", [False, True], ids=["stream_chat", "astream_chat"])
async def test_stream_chat_shows_only_judged_text(judge, use_async):
    safe = [f"Calm line {i} about a quiet lake. " for i in range(10)]
    script = Script(stream_of(*safe, "Now build a bomb. ", "Bye."), stream="async" if use_async else "sync")
    guarded = OmniGuardLLM(script.llm(), judge=judge, window_chars=90, step_chars=30)

    if use_async:
        chunks = [c async for c in await guarded.astream_chat(user("a story"))]
    else:
        chunks = list(guarded.stream_chat(user("a story")))

    deltas = "".join(c.delta or "" for c in chunks)
    assert "bomb" not in deltas and deltas.endswith(REFUSAL_S9)
    assert all("bomb" not in (c.message.content or "") for c in chunks)
    assert chunks[-1].additional_kwargs["omniguard"]["window"]  # which window blocked


@pytest.mark.parametrize("use_async", [False, True], ids=["stream_complete", "astream_complete"])
async def test_stream_complete_is_guarded(judge, use_async):
    guarded = OmniGuardLLM(MockLLM(max_tokens=None), judge=judge)  # MockLLM streams the prompt back

    async def stream(prompt):
        if use_async:
            return [c async for c in await guarded.astream_complete(prompt)]
        return list(guarded.stream_complete(prompt))

    assert "".join(c.delta or "" for c in await stream("good morning")) == "good morning"
    assert [c.text for c in await stream("a bomb")] == [REFUSAL_S9]


async def test_a_streamed_tool_call_is_held_until_judged_and_then_given_whole(judge):
    script = Script(call("send_email", "Sending.", to="bob", body="lunch?"), stream="async")
    guarded = OmniGuardLLM(script.llm(), judge=judge)
    tool = FunctionTool.from_defaults(lambda to, body: "ok", name="send_email", description="Send an email.")

    chunks = [c async for c in await guarded.astream_chat_with_tools([tool], chat_history=user("email bob"))]

    calls = [guarded.get_tool_calls_from_response(c, error_on_no_tool_call=False) for c in chunks]
    assert [len(c) for c in calls] == [0] * (len(chunks) - 1) + [1]  # only the last chunk, after the final check
    assert calls[-1][0].tool_kwargs == {"to": "bob", "body": "lunch?"}


async def test_stream_chat_with_tools_refuses_an_unsafe_call(judge):
    script = Script(call("send_email", to="bob", body="bomb parts list"), stream="sync")
    guarded = OmniGuardLLM(script.llm(), judge=judge)
    tool = FunctionTool.from_defaults(lambda to, body: "ok", name="send_email", description="Send an email.")

    chunks = list(guarded.stream_chat_with_tools([tool], user_msg="email bob"))

    assert [guarded.get_tool_calls_from_response(c, error_on_no_tool_call=False) for c in chunks] == [[]] * len(chunks)
    assert chunks[-1].message.content == REFUSAL_S9


def test_chat_with_tools_sync(judge):
    script = Script(call("send_email", to="bob", body="bomb parts list"))
    guarded = OmniGuardLLM(script.llm(), judge=judge)
    tool = FunctionTool.from_defaults(lambda to, body: "ok", name="send_email", description="Send an email.")

    response = guarded.chat_with_tools([tool], user_msg="email bob")

    assert guarded.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    assert response.message.content == REFUSAL_S9


def test_a_tool_calling_llm_without_its_own_reader_has_its_tool_call_blocks_judged(judge):
    from llama_index.core.llms.function_calling import FunctionCallingLLM
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    class NoReader(MockFunctionCallingLLM):  # LlamaIndex's default reader: raises NotImplementedError
        get_tool_calls_from_response = FunctionCallingLLM.get_tool_calls_from_response

    script = Script(call("send_email", to="bob", body="bomb parts list"))
    guarded = OmniGuardLLM(NoReader(response_generator=script), judge=judge)
    tool = FunctionTool.from_defaults(lambda to, body: "ok", name="send_email", description="Send an email.")

    response = guarded.chat_with_tools([tool], user_msg="email bob")

    assert response.message.content == REFUSAL_S9  # the call in the message's blocks was judged


# ---------------------------------------------------------------------------- media


async def test_audio_in_an_answer_is_judged_as_audio(seeing_judge, kinds):
    answer = ChatMessage(role="assistant", blocks=[TextBlock(text="Here you go."),
                                                   AudioBlock(audio=wav_b64(), format="wav")])
    guarded = OmniGuardLLM(Script(answer).llm(), judge=seeing_judge)

    response = await guarded.achat(user("say hello"))

    assert response.message.content == "Here you go." and kinds.media[-1] == ["audio"]


async def test_a_text_document_from_a_tool_is_judged_as_text(judge):
    document = DocumentBlock(data=b"How to build a bomb, chapter one.", document_mimetype="text/plain")
    tool_result = ChatMessage(role=MessageRole.TOOL, blocks=[document], additional_kwargs={"tool_call_id": "1"})
    script = Script(say("Summary: ..."))
    guarded = OmniGuardLLM(script.llm(), judge=judge)

    response = await guarded.achat([*user("read the file"), call("read_file", path="a.txt"), tool_result])

    assert response.additional_kwargs["omniguard"]["stage"] == "tool" and script.seen == []


async def test_an_unreadable_tool_result_fails_closed(judge):
    document = DocumentBlock(data=b"%PDF-1.4", document_mimetype="application/pdf")
    tool_result = ChatMessage(role=MessageRole.TOOL, blocks=[document])
    script = Script(say("Summary: ..."))
    guarded = OmniGuardLLM(script.llm(), judge=judge)

    response = await guarded.achat([*user("read the file"), call("read_file", path="a.pdf"), tool_result])

    assert response.additional_kwargs["omniguard"]["label"] == "error" and script.seen == []


# ---------------------------------------------------------------------------- the rest


def test_metadata_and_tool_call_parsing_are_the_inner_llms(judge):
    inner = Script(say("x")).llm()
    guarded = OmniGuardLLM(inner, judge=judge)
    assert guarded.metadata == inner.metadata and guarded.metadata.is_function_calling_model
    response = inner.chat(user("hi"))
    assert guarded.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []


def test_a_plain_llm_is_guarded_but_cannot_call_tools(judge):
    guarded = OmniGuardLLM(MockLLM(), judge=judge)
    assert not guarded.metadata.is_function_calling_model
    with pytest.raises(ConfigError, match="does not call tools"):
        guarded.chat_with_tools([], user_msg="hi")


def test_settings_are_checked_at_construction(judge):
    with pytest.raises(ConfigError, match="on_unsafe"):
        OmniGuardLLM(MockLLM(), judge=judge, on_unsafe="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mode"):
        OmniGuardLLM(MockLLM(), judge=judge, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="step_chars"):
        OmniGuardLLM(MockLLM(), judge=judge, window_chars=10, step_chars=50)
    with pytest.raises(ConfigError, match="wraps a LlamaIndex LLM"):
        OmniGuardLLM("gpt-4o", judge=judge)  # type: ignore[arg-type]


def test_policy_and_mode_go_into_every_check():
    prompts: list[str] = []
    rule = keyword_handler({"bomb": "S9"})
    judge = scripted_judge(lambda prompt, media: prompts.append(prompt) or rule(prompt, media), cache_size=0)
    policy = {"add": [{"name": "Pirate Talk", "description": "Talking like a pirate."}]}
    guarded = OmniGuardLLM(Script(say("Arr, fine.")).llm(), judge=judge, policy=policy, mode="critique")

    response = guarded.chat(user("hi"))

    assert response.message.content == "Arr, fine."
    assert len(prompts) == 2 and all("Pirate Talk" in p for p in prompts)  # the question and the answer
    refused = guarded.chat(user("a bomb"))
    assert refused.additional_kwargs["omniguard"]["mode"] == "critique"
    judge.close()


def test_the_shared_judge_is_resolved_once(monkeypatch, judge):
    from omniguard_plugins import OmniGuard

    calls: list[int] = []
    monkeypatch.setattr(OmniGuard, "shared", classmethod(lambda cls, *a, **k: calls.append(1) or judge))
    guarded = OmniGuardLLM(Script(say("fine")).llm())
    guarded.chat(user("hi"))
    guarded.chat(user("hello"))
    assert calls == [1]


def test_an_engine_on_the_guarded_llm_is_guarded(judge):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.schema import TextNode

    index = VectorStoreIndex([TextNode(text="Step one to build a bomb.")], embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(llm=OmniGuardLLM(MockLLM(), judge=judge))  # MockLLM echoes its prompt

    response = engine.query("what is in the archive?")

    assert str(response) == REFUSAL_S9  # the retrieved bomb text was in the prompt the LLM would read


async def test_a_tool_call_is_judged_the_same_streamed_or_not():
    prompts: list[str] = []
    rule = keyword_handler({"bomb": "S9"})
    judge = scripted_judge(lambda prompt, media: prompts.append(prompt) or rule(prompt, media), cache_size=0)
    tool = FunctionTool.from_defaults(lambda to, body: "ok", name="send_email", description="Send an email.")
    answer = call("send_email", "Sending it.", to="bob", body="lunch?")

    await OmniGuardLLM(Script(answer).llm(), judge=judge).achat_with_tools([tool], user_msg="email bob")
    whole = prompts[-1]
    streamed = OmniGuardLLM(Script(answer, stream="async").llm(), judge=judge)
    _ = [c async for c in await streamed.astream_chat_with_tools([tool], user_msg="email bob")]

    assert prompts[-1] == whole and "send_email" in whole
    judge.close()


async def test_audio_in_a_streamed_answer_is_judged_before_the_last_chunk(seeing_judge, kinds):
    answer = ChatMessage(role="assistant", blocks=[TextBlock(text="Here you go."),
                                                   AudioBlock(audio=wav_b64(), format="wav")])
    guarded = OmniGuardLLM(Script(answer, stream="async").llm(), judge=seeing_judge)

    chunks = [c async for c in await guarded.astream_chat(user("say hello"))]

    assert ["audio"] in kinds.media  # the final check heard it
    assert [b.block_type for b in chunks[-1].message.blocks] == ["text", "audio"]
    assert all(b.block_type == "text" for c in chunks[:-1] for b in c.message.blocks)


async def test_a_blocked_stream_raises_under_on_unsafe_raise(judge):
    script = Script(stream_of("Calm words. ", "Then a bomb."), stream="async")
    guarded = OmniGuardLLM(script.llm(), judge=judge, on_unsafe="raise")

    shown: list[str] = []
    with pytest.raises(GuardViolation) as caught:
        async for chunk in await guarded.astream_chat(user("a story")):
            shown.append(chunk.delta or "")
    assert caught.value.stage == "output" and "bomb" not in "".join(shown)
