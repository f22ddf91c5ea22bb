"""Loading and wiring: offline loading, code-first configs, ``check_async``, and where the
rails run (LLMRails) and do not (IORails, NeMo's manifest-only engine)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from nemoguardrails import Guardrails, LLMRails, RailsConfig
from nemoguardrails.embeddings.providers.fastembed import FastEmbedEmbeddingModel
from nemoguardrails.guardrails.iorails import IORails
from nemoguardrails.rails.llm.options import RailStatus
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import INPUT_FLOW, OUTPUT_FLOW, RAILS_DIR, REFUSAL, register


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network beyond loopback, and no embedding model: every attempt is recorded and fails."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(f"connect {address}")
            raise OSError(f"network blocked in this test: {address}")
        return real_connect(self, address, *args)

    def no_embeddings(self, *args, **kwargs):
        attempts.append("FastEmbed model")
        raise RuntimeError("embedding model blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(FastEmbedEmbeddingModel, "__init__", no_embeddings)
    return attempts


def test_shipped_config_loads_and_runs_offline(offline, config_dir, judge):
    llm = FakeLLMModel(responses=["Hello!"])
    rails = register(LLMRails(RailsConfig.from_path(config_dir), llm=llm), judge=judge)

    assert rails.generate(messages=[{"role": "user", "content": "hi"}])["content"] == "Hello!"
    assert rails.generate(messages=[{"role": "user", "content": "a bomb"}])["content"] == REFUSAL
    assert offline == []
    with pytest.raises(OSError, match="network blocked"):  # the guard itself works
        socket.create_connection(("203.0.113.7", 443), timeout=1)


def test_code_first_config_needs_register(judge, tmp_path: Path):
    """A config assembled in code (our flows, no actions.py next to them) works once
    ``register`` has added the actions."""
    flows = (Path(RAILS_DIR) / "flows.v1.co").read_text()
    yaml = f"models: []\nrails:\n  input: {{flows: [{INPUT_FLOW}]}}\n  output: {{flows: [{OUTPUT_FLOW}]}}\n"
    config = RailsConfig.from_content(colang_content=flows, yaml_content=yaml)

    bare = LLMRails(config, llm=FakeLLMModel(responses=["x"]))
    assert not bare.runtime.action_dispatcher.has_registered("omniguard_check_input")

    llm = FakeLLMModel(responses=["never said"])
    rails = register(LLMRails(config, llm=llm), judge=judge)
    assert rails.generate(messages=[{"role": "user", "content": "a bomb"}])["content"] == REFUSAL
    assert llm.inference_count == 0


@pytest.mark.parametrize("colang", ["1.0"])
async def test_check_async_runs_only_the_rails(make_rails, judge):
    rails, llm = make_rails(judge, [])  # an empty fake LLM: any generation would fail

    unsafe_in = await rails.check_async([{"role": "user", "content": "build a bomb"}])
    safe_in = await rails.check_async([{"role": "user", "content": "hi"}])
    unsafe_out = await rails.check_async([{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": "a bomb"}])
    safe_out = await rails.check_async([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])

    assert (unsafe_in.status, unsafe_in.rail) == (RailStatus.BLOCKED, INPUT_FLOW)
    assert safe_in.status == RailStatus.PASSED
    assert (unsafe_out.status, unsafe_out.rail) == (RailStatus.BLOCKED, OUTPUT_FLOW)
    assert safe_out.status == RailStatus.PASSED
    assert llm.inference_count == 0


@pytest.mark.parametrize("colang", ["2.x"])
async def test_check_async_is_not_offered_for_colang_2(make_rails, judge):
    """NeMo 0.24.1's limit, pinned so the docs get updated when it goes away: on Colang 2,
    check_async runs a whole turn (the main LLM included) and then raises."""
    rails, llm = make_rails(judge, ["a generated answer"])
    with pytest.raises(ValueError, match="not supported for Colang 2"):
        await rails.check_async([{"role": "user", "content": "hi"}])
    assert llm.inference_count == 1


def test_iorails_cannot_run_custom_action_rails():
    """IORails runs only rails from NeMo's built-in manifest catalog, so a config with our
    flows is not servable there (the docs' reason for the OpenAI-endpoint path)."""
    reason = IORails.unsupported_reason(RailsConfig.from_path(RAILS_DIR))
    assert reason is not None and INPUT_FLOW in reason


def test_the_guardrails_facade_falls_back_to_llmrails(judge):
    llm = FakeLLMModel(responses=["never said"])
    rails = Guardrails(RailsConfig.from_path(RAILS_DIR), llm=llm)
    register(rails, judge=judge)

    assert not rails.use_iorails_engine
    assert rails.generate(messages=[{"role": "user", "content": "a bomb"}])["content"] == REFUSAL
    assert llm.inference_count == 0
    with pytest.raises(ValueError):
        Guardrails(RailsConfig.from_path(RAILS_DIR), require_iorails=True)
