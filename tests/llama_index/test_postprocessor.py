"""OmniGuardPostprocessor in a real query engine over a real VectorStoreIndex."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.schema import (
    ImageNode,
    MediaResource,
    MetadataMode,
    Node,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from llama_index_omniguard import GuardViolation, OmniGuardPostprocessor

from omniguard_plugins.media import wav_bytes

QUESTION = "What is in the archive?"


def ids(response) -> set[str]:
    return {n.node.node_id for n in response.source_nodes}


async def run(engine, question: str, use_async: bool):
    return await engine.aquery(question) if use_async else engine.query(question)


@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
async def test_drop_removes_the_unsafe_text_node_and_the_unsafe_image_node(index, llm, judge, use_async):
    engine = index.as_query_engine(llm=llm, similarity_top_k=10,
                                   node_postprocessors=[OmniGuardPostprocessor(judge=judge, on_unsafe="drop")])

    response = await run(engine, QUESTION, use_async)

    assert ids(response) == {"paris", "blue"}
    assert "bomb" not in str(response)  # MockLLM echoes its prompt: the LLM never saw the node


@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
async def test_annotate_keeps_every_node_with_its_verdict(index, llm, judge, use_async):
    engine = index.as_query_engine(llm=llm, similarity_top_k=10,
                                   node_postprocessors=[OmniGuardPostprocessor(judge=judge, on_unsafe="annotate")])

    response = await run(engine, QUESTION, use_async)

    verdicts = {n.node.node_id: n.node.metadata["omniguard"] for n in response.source_nodes}
    assert set(verdicts) == {"paris", "bomb", "red", "blue"}
    assert verdicts["bomb"]["label"] == "unsafe" and verdicts["bomb"]["categories"] == ["S9"]
    assert verdicts["red"]["label"] == "unsafe" and verdicts["red"]["categories"] == ["S1"]
    assert verdicts["paris"]["safe"] and verdicts["blue"]["safe"]
    for item in response.source_nodes:  # the verdict never reaches the LLM or the embedder
        assert "omniguard" not in item.node.get_content(MetadataMode.LLM)
        assert "omniguard" not in item.node.get_content(MetadataMode.EMBED)
    assert "omniguard" not in index.docstore.get_node("bomb").metadata  # the stored node is untouched


@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
async def test_all_nodes_of_a_query_are_judged_in_one_call(index, llm, judge, use_async):
    engine = index.as_query_engine(llm=llm, similarity_top_k=10,
                                   node_postprocessors=[OmniGuardPostprocessor(judge=judge)])

    await run(engine, QUESTION, use_async)
    assert judge.backend.calls == 1
    assert len(judge.backend.requests) == 4

    await run(engine, QUESTION, use_async)
    assert judge.backend.calls == 2


async def test_raise_names_the_unsafe_nodes(index, llm, judge):
    engine = index.as_query_engine(llm=llm, similarity_top_k=10,
                                   node_postprocessors=[OmniGuardPostprocessor(judge=judge, on_unsafe="raise")])
    with pytest.raises(GuardViolation, match="2 of 4 retrieved nodes unsafe") as info:
        engine.query(QUESTION)
    assert info.value.stage == "tool"
    assert info.value.verdict.unsafe
    assert isinstance(info.value.content, NodeWithScore)


def test_with_query_judges_each_node_as_an_answer_to_the_query(judge):
    node = NodeWithScore(node=TextNode(text="The museum opens at nine."), score=1.0)
    kept = OmniGuardPostprocessor(judge=judge, with_query=True).postprocess_nodes(
        [node], query_bundle=QueryBundle("Tell me about bomb disposal history")
    )
    prompt = judge.backend.prompts[0]
    assert "User: Tell me about bomb disposal history" in prompt
    assert "Agent: The museum opens at nine." in prompt
    assert kept == []  # in the context of this query, the keyword judge calls it unsafe

    judge.backend.reset()
    assert OmniGuardPostprocessor(judge=judge).postprocess_nodes([node], query_str="anything") == [node]
    assert "User: The museum opens at nine." in judge.backend.prompts[0]


def _wav_bytes() -> bytes:
    return wav_bytes((np.sin(np.arange(8000) / 10) * 8000).astype("<i2"), 16000)


async def test_every_node_shape_is_judged_with_its_media(judge, red_png: Path, blue_png: Path, tmp_path: Path):
    red_b64 = base64.b64encode(red_png.read_bytes()).decode()
    audio = tmp_path / "clip.wav"
    audio.write_bytes(_wav_bytes())
    nodes = [
        ImageNode(image=red_b64, text="", id_="b64"),
        ImageNode(image_url=f"data:image/png;base64,{red_b64}", id_="url"),
        Node(text_resource=MediaResource(text="a caption"), image_resource=MediaResource(data=red_png.read_bytes()),
             id_="resource"),
        Node(image_resource=MediaResource(path=blue_png), audio_resource=MediaResource(path=audio), id_="av"),
        TextNode(text="A harmless note.", id_="text"),
    ]
    kept = await OmniGuardPostprocessor(judge=judge).apostprocess_nodes([NodeWithScore(node=n) for n in nodes])

    assert [n.node.node_id for n in kept] == ["av", "text"]
    kinds = sorted(m.kind for r in judge.backend.requests for m in r.media)
    assert kinds == ["audio", "image", "image", "image", "image"]


def test_unreadable_media_fails_closed_with_the_reason(judge, tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    node = NodeWithScore(node=ImageNode(image_path=str(broken), text="caption", id_="broken"))

    assert OmniGuardPostprocessor(judge=judge).postprocess_nodes([node]) == []
    annotated = OmniGuardPostprocessor(judge=judge, on_unsafe="annotate").postprocess_nodes([node])
    info = annotated[0].node.metadata["omniguard"]
    assert info["safe"] is False and info["error"].startswith("corrupt_media")


def test_uses_the_shared_judge_by_default_and_serialises_without_it(judge, monkeypatch):
    from omniguard_plugins import OmniGuard

    monkeypatch.setattr(OmniGuard, "shared", classmethod(lambda cls, *a, **k: judge))
    post = OmniGuardPostprocessor(on_unsafe="annotate")
    assert post.judge is None
    kept = post.postprocess_nodes([NodeWithScore(node=TextNode(text="a bomb"))])
    assert kept[0].node.metadata["omniguard"]["label"] == "unsafe"
    assert "judge" not in post.to_dict()


def test_the_shared_judge_is_resolved_once_not_per_query(judge, monkeypatch):
    from omniguard_plugins import OmniGuard

    resolved: list[int] = []
    monkeypatch.setattr(OmniGuard, "shared", classmethod(lambda cls, *a, **k: resolved.append(1) or judge))
    post = OmniGuardPostprocessor()
    for _ in range(3):
        post.postprocess_nodes([NodeWithScore(node=TextNode(text="hello"))])
    assert resolved == [1]


def test_annotations_are_the_core_verdict_summary(judge):
    from omniguard_plugins.doors import VerdictSummary

    kept = OmniGuardPostprocessor(judge=judge, on_unsafe="annotate").postprocess_nodes(
        [NodeWithScore(node=TextNode(text="a bomb"))])
    summary = VerdictSummary.from_json(kept[0].node.metadata["omniguard"])
    assert summary.stage == "tool" and summary.categories == ("S9",) and not summary.safe
