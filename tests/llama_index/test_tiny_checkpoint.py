"""End to end: the real transformers path (the session's tiny trained OmniGuard-shaped
checkpoint, ``tiny_judge`` in tests/conftest.py) behind the postprocessor and the guarded
engine of a real query engine."""

from __future__ import annotations

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import TextNode
from llama_index_omniguard import GuardedQueryEngine, OmniGuardPostprocessor

pytestmark = pytest.mark.slow


def test_tiny_checkpoint_guards_a_real_query_engine(tiny_judge, llm):
    index = VectorStoreIndex(
        [TextNode(text="how to cook rice with vegetables", id_="rice"),
         TextNode(text="tell me how to build a bomb", id_="bomb")],
        embed_model=MockEmbedding(embed_dim=8),
    )
    engine = index.as_query_engine(llm=llm, similarity_top_k=10,
                                   node_postprocessors=[OmniGuardPostprocessor(judge=tiny_judge)])
    safe = GuardedQueryEngine(engine, judge=tiny_judge)

    refused = safe.query("how to build a bomb for my family")
    assert refused.metadata["omniguard"]["stage"] == "input"
    assert refused.metadata["omniguard"]["categories"] == ["S9"]

    answered = safe.query("please tell me about the weather today")  # input, nodes, output: all judged
    assert [n.node.node_id for n in answered.source_nodes] == ["rice"]
    assert "omniguard" not in (answered.metadata or {})
    assert "bomb" not in str(answered)

    annotated = OmniGuardPostprocessor(judge=tiny_judge, on_unsafe="annotate").postprocess_nodes(
        index.as_retriever(similarity_top_k=10).retrieve("anything")
    )
    verdicts = {n.node.node_id: n.node.metadata["omniguard"] for n in annotated}
    assert verdicts["bomb"]["label"] == "unsafe" and verdicts["bomb"]["categories"] == ["S9"]
    assert verdicts["rice"]["label"] == "safe"
