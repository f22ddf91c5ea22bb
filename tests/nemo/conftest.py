"""Fixtures for the NeMo Guardrails adapter tests: real LLMRails on NeMo's FakeLLMModel, the
shipped config folders, and a scripted judge that decides on words and image colour."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import RAILS_DIR, RAILS_DIR_V2, register

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import scripted_judge
from tests.support.nemo_helpers import handler, make_png_data_uri


@pytest.fixture
def judge() -> OmniGuard:
    with scripted_judge(handler, cache_size=0) as j:
        yield j


@pytest.fixture(params=["1.0", "2.x"])
def colang(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def config_dir(colang: str) -> str:
    """The shipped config folder for this Colang version."""
    return RAILS_DIR if colang == "1.0" else RAILS_DIR_V2


@pytest.fixture
def make_rails(config_dir: str) -> Callable[..., tuple[LLMRails, FakeLLMModel]]:
    """``make_rails(judge, llm_responses, exceptions=False)``: the shipped config for this
    Colang version on a fake main LLM, with ``judge`` registered."""

    def make(judge: OmniGuard, responses: list[str], *, exceptions: bool = False) -> tuple[LLMRails, FakeLLMModel]:
        config = RailsConfig.from_path(config_dir)
        config.enable_rails_exceptions = exceptions
        llm = FakeLLMModel(responses=responses)
        return register(LLMRails(config, llm=llm), judge=judge), llm

    return make


def _exception_type(response: dict) -> str | None:
    """The rail exception a response carries: Colang 1 returns it as the message (role
    "exception"), Colang 2 among the response's events."""
    if response.get("role") == "exception":
        return response["content"]["type"]
    for event in response.get("events", []):
        if event["type"].endswith("Exception"):
            return event["type"]
    return None


@pytest.fixture
def png_data_uri() -> Callable[..., str]:
    """``png_data_uri((r, g, b), size=(w, h))``: a real PNG as a ``data:`` URI."""
    return make_png_data_uri


@pytest.fixture
def exception_type() -> Callable[[dict], str | None]:
    return _exception_type
