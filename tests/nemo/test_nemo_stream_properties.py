"""Property: ``nemoguardrails_omniguard.stream`` on a real ``LLMRails`` turn (the shipped Colang 1
config) with random answers, an unsafe sentence at a random place and random chunk boundaries.
No released character comes from the unsafe sentence or from the window that judged it unsafe
(the core rail's overlap rule), a blocked stream ends with the output flow's error chunk, and a
safe answer comes out byte-identical."""

from __future__ import annotations

import asyncio
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails_omniguard import OUTPUT_FLOW, RAILS_DIR, register, stream

from omniguard_plugins.streaming import StreamSettings
from tests.support.nemo_helpers import ChunkedLLM

WORDS = st.lists(st.sampled_from(["Paris", "is", "lovely", "in", "spring,", "and", "the", "food", "great.", "\n"]),
                 min_size=1, max_size=160)
UNSAFE_SENTENCE = "You bomb it. "
TRIGGER = "bomb"
#: the shipped windows (600 every 200) and small ones, so short answers cross many windows
SETTINGS = st.sampled_from([None, StreamSettings(window_chars=80, step_chars=20)])


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(words=WORDS, unsafe_at=st.one_of(st.none(), st.integers(0, 160)),
       points=st.lists(st.integers(0, 10_000), max_size=40), chosen=SETTINGS)
def test_nemo_stream_releases_only_what_the_core_rail_released(judge, words, unsafe_at, points, chosen) -> None:
    prose = " ".join(words) + " "
    if unsafe_at is not None:
        at = min(len(prose), unsafe_at * 6)
        at = prose.rfind(" ", 0, at) + 1  # a sentence starts at a word
        prose = prose[:at] + UNSAFE_SENTENCE + prose[at:]
    llm = ChunkedLLM(cut(prose, points))
    rails = register(LLMRails(RailsConfig.from_path(RAILS_DIR), llm=llm), judge=judge)

    async def collect() -> list[str]:
        return [c async for c in stream(rails, messages=[{"role": "user", "content": "Tell me about Paris"}],
                                        settings=chosen)]

    chunks = asyncio.run(collect())
    if unsafe_at is None:
        assert "".join(chunks) == prose  # byte-identical
        return
    *shown_chunks, last = chunks
    assert json.loads(last)["error"]["param"] == OUTPUT_FLOW
    shown = "".join(shown_chunks)
    assert prose.startswith(shown)
    sentence = prose.index(UNSAFE_SENTENCE)
    assert len(shown) <= sentence  # nothing from the unsafe sentence
    s = chosen or StreamSettings()
    trigger_end = sentence + UNSAFE_SENTENCE.index(TRIGGER) + len(TRIGGER)
    first_unsafe_end = math.ceil(trigger_end / s.step_chars) * s.step_chars  # the first window that holds it
    assert len(shown) <= max(0, first_unsafe_end - s.window_chars)  # nor from the window that saw it
