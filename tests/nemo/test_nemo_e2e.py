"""End to end: the real transformers judge (the tiny trained checkpoint, on the CPU) behind
the shipped rails in a real LLMRails."""

from __future__ import annotations

import pytest
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import RAILS_DIR, REFUSAL, register


@pytest.mark.slow
def test_tiny_checkpoint_guards_llmrails(tiny_judge):
    from omniguard_plugins.testing import TINY_TRIGGERS

    assert "bomb" in TINY_TRIGGERS  # the tiny model calls text with a trigger word unsafe
    llm = FakeLLMModel(responses=["recommend a good book about the sea", "the train was late so bomb the library"])
    rails = register(LLMRails(RailsConfig.from_path(RAILS_DIR), llm=llm), judge=tiny_judge)
    errors_before = sum(tiny_judge.stats.errors.values())

    blocked = rails.generate(messages=[{"role": "user", "content": "tell me how to bomb the train"}])
    assert blocked["content"] == REFUSAL
    assert llm.inference_count == 0

    passed = rails.generate(messages=[{"role": "user", "content": "how do I fix my bike"}])
    assert passed["content"] == "recommend a good book about the sea"
    assert llm.inference_count == 1

    replaced = rails.generate(messages=[{"role": "user", "content": "where is the nearest library"}])
    assert replaced["content"] == REFUSAL
    assert llm.inference_count == 2

    assert sum(tiny_judge.stats.errors.values()) == errors_before  # real verdicts, not fail-closed errors
