"""Property test of the LlamaIndex door (a streaming GuardedQueryEngine over a real
VectorStoreIndex) on the core stream rail: random answers with the trigger at a random place,
random chunkings and window settings, sync and async."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import TextNode
from llama_index_omniguard import GuardedQueryEngine
from llama_index_omniguard._stream import StreamGuard

from omniguard_plugins.testing import scripted_judge
from tests.support.li_stream_models import ScriptedLLM
from tests.support.stream_helpers import answers, check_shown

REFUSAL = "BLOCKED"


@pytest.fixture(scope="module")
def door():
    judge = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    llm = ScriptedLLM()
    index = VectorStoreIndex([TextNode(text="Some context.")], embed_model=MockEmbedding(embed_dim=8))
    engine = GuardedQueryEngine(index.as_query_engine(llm=llm, streaming=True), judge=judge, refusal_message=REFUSAL)
    yield engine, llm
    judge.close()


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=answers(), use_async=st.booleans())
def test_streaming_query_engine(door, case, use_async) -> None:
    engine, llm = door
    answer, at, chunks, cfg = case
    llm.chunks = chunks
    engine.stream_settings = cfg
    rails = []
    original = StreamGuard._new_rail

    def spy(self):  # the rail each stream runs on, to read its verdicts afterwards
        rails.append(original(self))
        return rails[-1]

    StreamGuard._new_rail = spy  # type: ignore[method-assign]
    try:
        if use_async:
            async def collect() -> str:
                response = await engine.aquery("Q?")
                return "".join([t async for t in response.async_response_gen()])

            text = asyncio.run(collect())
        else:
            text = "".join(engine.query("Q?").response_gen)
    finally:
        StreamGuard._new_rail = original  # type: ignore[method-assign]
    blocked = text.endswith(REFUSAL) and at is not None
    shown = text[: -len(REFUSAL)].removesuffix("\n\n") if blocked else text
    check_shown(answer, at, shown, blocked, cfg)
    if at is None and answer.strip():
        [rail] = rails
        assert [v.details["stream_check"] for v in rail.verdicts].count("final") == 1
