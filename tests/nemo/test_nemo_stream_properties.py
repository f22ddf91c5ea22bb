"""Property test of the NeMo door's streaming (NeMo's streaming output rails running the shipped
OmniGuard output rail, ``stream_first: false``): random answers with the trigger at a random
place. The trigger is never shown, what is shown is the answer's beginning, a blocked stream
ends with NeMo's error chunk, and a safe answer is shown whole. NeMo chunks on its own (no
look-ahead, no whole-answer check: see ``rails/config.yml``), so fewer cases than the core
rail's doors, each a real ``LLMRails.stream_async``."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel

from nemoguardrails_omniguard import RAILS_DIR, register

WORDS = st.lists(st.sampled_from(["Paris", "is", "lovely", "in", "spring", "and", "the", "food", "great."]),
                 min_size=1, max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(words=WORDS, trigger_at=st.one_of(st.none(), st.integers(0, 80)))
def test_nemo_stream_never_shows_the_trigger(judge, words, trigger_at) -> None:
    if trigger_at is not None:
        words = [*words[:trigger_at], "bomb", *words[trigger_at:]]
    answer = " ".join(words)
    rails = register(LLMRails(RailsConfig.from_path(RAILS_DIR), llm=FakeLLMModel(responses=[answer])), judge=judge)

    async def collect() -> list[str]:
        return [c async for c in rails.stream_async(messages=[{"role": "user", "content": "Tell me about Paris"}])]

    chunks = asyncio.run(collect())
    blocked = bool(chunks) and chunks[-1].lstrip().startswith("{") and "content_blocked" in chunks[-1]
    shown = "".join(chunks[:-1] if blocked else chunks)
    assert "bomb" not in shown
    assert answer.startswith(shown.strip())
    if trigger_at is None:
        assert not blocked and shown.strip() == answer.strip()
    else:
        assert blocked and json.loads(chunks[-1])["error"]["param"] == "omniguard check output"
