"""A real VectorStoreIndex over text and images, MockEmbedding/MockLLM, and a scripted judge
that calls text about bombs unsafe (S9) and mostly-red images unsafe (S1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import ImageDocument, ImageNode, TextNode

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import scripted_judge
from tests.support.media_makers import BLUE, RED, png_file, red_is_unsafe


@pytest.fixture
def judge():
    # max_wait_ms: room for a check_many's requests to meet in one batch on a busy machine
    guard = scripted_judge(red_is_unsafe, cache_size=0, max_wait_ms=50)
    yield guard
    guard.close()


@pytest.fixture
def red_png(tmp_path: Path) -> Path:
    return png_file(tmp_path / "red.png", RED)


@pytest.fixture
def blue_png(tmp_path: Path) -> Path:
    return png_file(tmp_path / "blue.png", BLUE)


@pytest.fixture
def llm() -> MockLLM:
    return MockLLM()


@pytest.fixture
def index(red_png: Path, blue_png: Path) -> VectorStoreIndex:
    """Two text nodes (one about a bomb), a red ImageNode and a blue ImageDocument."""
    nodes = [
        TextNode(text="Paris is the capital of France.", id_="paris"),
        TextNode(text="Step one to build a bomb: get the parts.", id_="bomb"),
        ImageNode(image_path=str(red_png), text="a photo from the archive", id_="red"),
        ImageDocument(image_path=str(blue_png), text="another photo from the archive", id_="blue"),
    ]
    return VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))


@pytest.fixture(autouse=True)
def _no_shared_judge_leaks():
    yield
    OmniGuard.reset_shared()
