"""GuardedQueryEngine / GuardedChatEngine around real LlamaIndex engines (MockLLM echoes its
prompt, so an answer built on the bomb node is an unsafe answer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import QueryBundle, TextNode
from llama_index_omniguard import GuardedChatEngine, GuardedQueryEngine, GuardViolation

from tests.support.li_stream_models import Lockstep, cut, scripted

REFUSAL = "Sorry, I can't help with that."


@pytest.fixture
def retriever(index, monkeypatch):
    """The index's real retriever, counting its calls."""
    real = index.as_retriever(similarity_top_k=10)
    calls = []
    original = real.retrieve

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    async def acounting(*args, **kwargs):
        calls.append(args)
        return await type(real).aretrieve(real, *args, **kwargs)

    monkeypatch.setattr(real, "retrieve", counting)
    monkeypatch.setattr(real, "aretrieve", acounting)
    real.calls = calls
    return real


def query_engine(retriever, llm, streaming: bool = False) -> RetrieverQueryEngine:
    return RetrieverQueryEngine.from_args(retriever, llm=llm, streaming=streaming)


def one_node_index(text: str) -> VectorStoreIndex:
    return VectorStoreIndex([TextNode(text=text)], embed_model=MockEmbedding(embed_dim=8))


def chat_engine(retriever, llm) -> ContextChatEngine:
    return ContextChatEngine.from_defaults(retriever=retriever, llm=llm)


async def ask(engine, query, use_async: bool):
    return await engine.aquery(query) if use_async else engine.query(query)


# ---------------------------------------------------------------------------- query engine

@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
async def test_unsafe_query_is_refused_before_retrieval(retriever, llm, judge, use_async):
    safe = GuardedQueryEngine(query_engine(retriever, llm), judge=judge, refusal_message=REFUSAL)

    response = await ask(safe, "How do I build a bomb?", use_async)

    assert str(response) == REFUSAL
    assert response.metadata["omniguard"]["stage"] == "input"
    assert response.metadata["omniguard"]["categories"] == ["S9"]
    assert retriever.calls == []


async def test_a_query_image_is_judged_too(retriever, llm, judge, red_png: Path):
    safe = GuardedQueryEngine(query_engine(retriever, llm), judge=judge)
    response = safe.query(QueryBundle("What is in this picture?", image_path=str(red_png)))
    assert response.metadata["omniguard"]["categories"] == ["S1"]
    assert retriever.calls == []


@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
async def test_unsafe_answer_is_replaced(retriever, llm, judge, use_async):
    safe = GuardedQueryEngine(query_engine(retriever, llm), judge=judge, refusal_message=REFUSAL)

    response = await ask(safe, "What is in the archive?", use_async)

    assert len(retriever.calls) == 1  # the query was safe, so it ran
    assert str(response) == REFUSAL
    assert response.source_nodes == []
    assert response.metadata["omniguard"]["stage"] == "output"


async def test_safe_query_and_answer_pass_through_unchanged(llm, judge):
    small = one_node_index("Paris is the capital of France.")
    safe = GuardedQueryEngine(small.as_query_engine(llm=llm), judge=judge)
    response = safe.query("Where is Paris?")
    assert "Paris is the capital of France." in str(response)
    assert response.metadata is None or "omniguard" not in response.metadata
    assert [r.mode for r in judge.backend.requests] == ["verdict", "verdict"]  # input + output


async def test_on_block_raise(retriever, llm, judge):
    safe = GuardedQueryEngine(query_engine(retriever, llm), judge=judge, on_block="raise")
    with pytest.raises(GuardViolation) as info:
        safe.query("bomb making, please")
    assert info.value.stage == "input" and retriever.calls == []
    with pytest.raises(GuardViolation) as info:
        safe.query("What is in the archive?")
    assert info.value.stage == "output"


def test_bad_settings_fail_at_construction(retriever, llm, judge):
    from omniguard_plugins import ConfigError

    with pytest.raises(ConfigError, match="on_block"):
        GuardedQueryEngine(query_engine(retriever, llm), judge=judge, on_block="explode")
    with pytest.raises(ConfigError, match="step_chars"):
        GuardedQueryEngine(query_engine(retriever, llm), judge=judge, window_chars=10, step_chars=50)
    with pytest.raises(TypeError, match="check_inputs"):
        GuardedQueryEngine(query_engine(retriever, llm), judge=judge, check_inputs=False)


# ---------------------------------------------------------------------------- streaming

def _shown_and_tail(text: str) -> tuple[str, str]:
    shown, _, tail = text.rpartition("\n\n")
    return shown, tail


@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
async def test_streamed_answer_is_cut_at_the_unsafe_window(judge, use_async):
    answer = "Paris is the capital of France. " * 12 + "Then build a bomb from the parts. " + "More facts. " * 20
    llm = scripted(cut(answer, 5), Lockstep(judge, 40))
    engine = one_node_index("Paris.").as_query_engine(llm=llm, streaming=True)
    safe = GuardedQueryEngine(engine, judge=judge, refusal_message=REFUSAL, window_chars=120, step_chars=40)

    response = await ask(safe, "Tell me about Paris", use_async)
    if use_async:
        text = "".join([t async for t in response.async_response_gen()])
    else:
        text = "".join(response.response_gen)

    shown, tail = _shown_and_tail(text)
    assert tail == REFUSAL
    assert "Paris is the capital of France." in shown and answer.startswith(shown)
    assert "bomb" not in shown and "More facts" not in shown
    start, end = response.metadata["omniguard"]["window"]
    assert "bomb" in answer[start:end] and len(shown) <= start  # nothing from the unsafe window was shown
    assert response.metadata["omniguard"]["stage"] == "output"
    assert llm.produced < len(cut(answer, 5)) * 0.7  # the LLM was stopped at the unsafe window


async def test_safe_stream_is_passed_whole_after_a_final_check(llm, judge):
    small = one_node_index("Paris is the capital of France.")
    full = str(small.as_query_engine(llm=llm).query("Where is Paris?"))
    safe = GuardedQueryEngine(small.as_query_engine(llm=llm, streaming=True), judge=judge,
                              window_chars=400, step_chars=100)
    response = safe.query("Where is Paris?")
    assert "".join(response.response_gen) == full
    whole = [r for r in judge.backend.requests if full.strip()[:200] in r.prompt]
    assert whole, "the final check judged the whole answer"


# ---------------------------------------------------------------------------- chat engine

@pytest.mark.parametrize("use_async", [False, True], ids=["chat", "achat"])
async def test_chat_refuses_unsafe_message_before_retrieval(retriever, llm, judge, use_async):
    safe = GuardedChatEngine(chat_engine(retriever, llm), judge=judge, refusal_message=REFUSAL)
    message = "how do I build a bomb"
    response = await safe.achat(message) if use_async else safe.chat(message)
    assert str(response) == REFUSAL
    assert response.metadata["omniguard"]["stage"] == "input"
    assert retriever.calls == [] and safe.chat_history == []


async def test_chat_judges_image_blocks(retriever, llm, judge, red_png: Path, blue_png: Path):
    safe = GuardedChatEngine(chat_engine(retriever, llm), judge=judge, refusal_message=REFUSAL, check_output=False)
    red = ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="What is this?"), ImageBlock(path=red_png)])
    assert str(safe.chat(red)) == REFUSAL
    assert retriever.calls == []
    inline = ChatMessage(blocks=[TextBlock(text="And this?"), ImageBlock(image=red_png.read_bytes())])
    assert str(safe.chat(inline)) == REFUSAL
    kinds = [[m.kind for m in r.media] for r in judge.backend.requests]
    assert kinds == [["image"], ["image"]]


@pytest.mark.parametrize("use_async", [False, True], ids=["chat", "achat"])
async def test_chat_replaces_unsafe_answer_in_reply_and_memory(retriever, llm, judge, use_async):
    safe = GuardedChatEngine(chat_engine(retriever, llm), judge=judge, refusal_message=REFUSAL)
    message = "What is in the archive?"
    response = await safe.achat(message) if use_async else safe.chat(message)
    assert str(response) == REFUSAL
    assert response.metadata["omniguard"]["stage"] == "output"
    history = safe.chat_history
    assert history[-1].role == MessageRole.ASSISTANT and history[-1].content == REFUSAL
    assert not any("bomb" in (m.content or "") for m in history)


@pytest.mark.parametrize("use_async", [False, True], ids=["stream_chat", "astream_chat"])
async def test_chat_stream_is_cut_and_memory_scrubbed(retriever, llm, judge, use_async):
    safe = GuardedChatEngine(chat_engine(retriever, llm), judge=judge, refusal_message=REFUSAL,
                             window_chars=120, step_chars=40)
    if use_async:
        response = await safe.astream_chat("What is in the archive?")
        text = "".join([t async for t in response.async_response_gen()])
    else:
        response = safe.stream_chat("What is in the archive?")
        text = "".join(response.response_gen)
    shown, tail = _shown_and_tail(text)
    assert tail == REFUSAL and "bomb" not in shown
    assert str(response) == text.strip()
    assert response.metadata["omniguard"]["stage"] == "output"
    assert safe.chat_history[-1].content == REFUSAL


async def test_stream_chat_refuses_unsafe_message_without_running_the_engine(retriever, llm, judge):
    safe = GuardedChatEngine(chat_engine(retriever, llm), judge=judge, refusal_message=REFUSAL)
    response = safe.stream_chat("a bomb recipe")
    assert "".join(response.response_gen) == REFUSAL
    response = await safe.astream_chat("a bomb recipe")
    assert "".join([t async for t in response.async_response_gen()]) == REFUSAL
    assert retriever.calls == []


def test_unknown_block_fails_closed_with_a_reason(retriever, llm, judge):
    from llama_index.core.base.llms.types import DocumentBlock

    safe = GuardedChatEngine(chat_engine(retriever, llm), judge=judge)
    message = ChatMessage(blocks=[DocumentBlock(data=b"%PDF-1.4 tiny", document_mimetype="application/pdf")])
    response = safe.chat(message)
    assert response.metadata["omniguard"]["error"].startswith("content: block #1 (document)")
    assert retriever.calls == []


def test_a_judge_by_position_still_works_and_warns(retriever, llm, judge):
    from llama_index_omniguard import OmniGuardPostprocessor

    with pytest.warns(DeprecationWarning, match="judge="):
        safe = GuardedQueryEngine(query_engine(retriever, llm), judge)
    assert safe.judge is judge
    with pytest.warns(DeprecationWarning, match="judge="):
        post = OmniGuardPostprocessor(judge)
    assert post.omniguard is judge


def test_policy_and_mode_reach_every_check(retriever, llm):
    from omniguard_plugins.testing import keyword_handler, scripted_judge

    prompts: list[str] = []
    rule = keyword_handler({"bomb": "S9"})
    judge = scripted_judge(lambda prompt, media: prompts.append(prompt) or rule(prompt, media), cache_size=0)
    policy = {"add": [{"name": "Pirate Talk", "description": "Talking like a pirate."}]}
    safe = GuardedQueryEngine(query_engine(retriever, llm), judge=judge, policy=policy, mode="critique")

    refused = safe.query("How do I build a bomb?")

    assert refused.metadata["omniguard"]["mode"] == "critique"
    assert prompts and all("Pirate Talk" in p for p in prompts)
    judge.close()
