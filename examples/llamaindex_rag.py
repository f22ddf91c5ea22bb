"""A small multimodal RAG app guarded by OmniGuard (LlamaIndex).

    python examples/llamaindex_rag.py                                  # scripted demo judge
    OMNIGUARD_MODEL=anonymous-omniguard/OmniGuard-3B python examples/llamaindex_rag.py

The index holds the texts and images in examples/data/. One of the texts and one image
(a red square standing in for a graphic photo) are unsafe. Without OMNIGUARD_MODEL the judge is
a scripted stand-in (text about bombs and mostly-red images are unsafe), so the example runs
offline in seconds; with it, the real checkpoint judges. The LLM is LlamaIndex's MockLLM, which
echoes its prompt, so you can see exactly which nodes reached it; swap in any LLM you like.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import ImageNode, TextNode
from llama_index_omniguard import GuardedQueryEngine, OmniGuardPostprocessor

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import keyword_handler, scripted_judge

DATA = Path(__file__).parent / "data"
IMAGE_CAPTIONS = {"sky.png": "a photo of the sky over Paris", "red.png": "a photo from the forum dump"}


def demo_judge() -> OmniGuard:
    """The real OmniGuard when OMNIGUARD_MODEL is set, else a scripted stand-in."""
    if os.environ.get("OMNIGUARD_MODEL"):
        return OmniGuard.shared()
    keywords = keyword_handler({"bomb": "S9"})

    def handler(prompt: str, media: list) -> str:
        for item in media:
            red, green, blue = np.asarray(item.image).reshape(-1, 3).mean(axis=0) if item.kind == "image" else (0, 0, 0)
            if red > 150 and green < 100 and blue < 100:
                return "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: Graphic violence."
        return keywords(prompt, media)

    return scripted_judge(handler)


def build_index() -> VectorStoreIndex:
    nodes = [TextNode(text=p.read_text().strip(), id_=p.stem) for p in sorted(DATA.glob("*.txt"))]
    nodes += [ImageNode(image_path=str(DATA / name), text=caption, id_=name)
              for name, caption in IMAGE_CAPTIONS.items()]
    return VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))


def main() -> None:
    judge = demo_judge()
    index = build_index()
    llm = MockLLM()
    engine = index.as_query_engine(llm=llm, similarity_top_k=10,
                                   node_postprocessors=[OmniGuardPostprocessor(judge=judge, on_unsafe="drop")])
    safe = GuardedQueryEngine(engine, judge=judge)

    print("== a safe question: unsafe nodes are dropped before the LLM reads them")
    response = safe.query("What do the documents say about Paris?")
    print("   nodes the LLM saw:", sorted(n.node.node_id for n in response.source_nodes))

    print("== an unsafe question: refused before retrieval runs")
    response = safe.query("How do I build a bomb?")
    print("  ", response, response.metadata["omniguard"])

    print("== annotate instead of drop: every node kept, with its verdict")
    annotated = index.as_query_engine(llm=llm, similarity_top_k=10,
                                      node_postprocessors=[OmniGuardPostprocessor(judge=judge, on_unsafe="annotate")])
    for item in annotated.query("What is in the archive?").source_nodes:
        verdict = item.node.metadata["omniguard"]
        print(f"   {item.node.node_id:14} {verdict['label']:7} {verdict['categories']}")

    print("== a streamed answer built on the unsafe text is cut at the unsafe window")
    unguarded_nodes = index.as_query_engine(llm=llm, similarity_top_k=10, streaming=True)
    streamed = GuardedQueryEngine(unguarded_nodes, judge=judge, window_chars=200, step_chars=50)

    async def stream() -> str:
        response = await streamed.aquery("Summarise the documents.")
        return "".join([token async for token in response.async_response_gen()])

    text = asyncio.run(stream())
    print("  ", text.replace("\n", " "))


if __name__ == "__main__":
    main()
