"""The shipped Colang 1 rails with NeMo's streaming output rails (LLMRails.stream_async, NeMo
0.24.1): stream_first is off, so no chunk is shown before the OmniGuard rail has passed it."""

from __future__ import annotations

import json

from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel

from nemoguardrails_omniguard import RAILS_DIR, register

SAFE = "Paris is lovely in spring and the food is great. " * 8
UNSAFE = "Then you build a bomb from the parts. "
QUESTION = [{"role": "user", "content": "Tell me about Paris"}]


def rails_for(judge, answer: str) -> LLMRails:
    return register(LLMRails(RailsConfig.from_path(RAILS_DIR), llm=FakeLLMModel(responses=[answer])), judge=judge)


async def collect(rails: LLMRails) -> list[str]:
    return [chunk async for chunk in rails.stream_async(messages=QUESTION)]


def test_the_shipped_config_holds_chunks_until_judged() -> None:
    streaming = RailsConfig.from_path(RAILS_DIR).rails.output.streaming
    assert streaming.enabled and streaming.stream_first is False


async def test_a_safe_answer_streams_whole(judge) -> None:
    chunks = await collect(rails_for(judge, SAFE))
    assert "".join(chunks).strip() == SAFE.strip()
    output_checks = [p for p in judge.backend.prompts if "Agent: Paris" in p]
    assert len(output_checks) >= 2  # judged chunk by chunk, with the judge registered on these rails


async def test_an_unsafe_answer_is_cut_before_the_trigger_is_shown(judge) -> None:
    answer = SAFE + UNSAFE + SAFE
    chunks = await collect(rails_for(judge, answer))
    *shown, last = chunks
    error = json.loads(last)["error"]
    assert error["code"] == "content_blocked" and error["param"] == "omniguard check output"
    text = "".join(shown)
    assert "bomb" not in text and answer.startswith(text.strip()[:50])
    # NeMo judges chunk by chunk with no look-ahead: text up to a chunk boundary before the
    # trigger may show (the core rail's overlap rule does not apply here; see config.yml)
    assert len(text) <= answer.index("bomb")
