"""A real VectorStoreIndex over text and images, MockEmbedding/MockLLM, and a scripted judge
that calls text about bombs unsafe (S9) and mostly-red images unsafe (S1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import ImageDocument, ImageNode, TextNode
from PIL import Image

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import keyword_handler, scripted_judge

_keywords = keyword_handler({"bomb": "S9"})
UNSAFE_IMAGE = "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: A violent image."


def red_is_unsafe(prompt: str, media: list) -> str:
    """Text: unsafe when it mentions a bomb. Images: unsafe when mostly red."""
    for item in media:
        if item.kind == "image":
            r, g, b = np.asarray(item.image.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)
            if r > 150 and g < 100 and b < 100:
                return UNSAFE_IMAGE
    return _keywords(prompt, media)


@pytest.fixture
def judge():
    # max_wait_ms: room for a check_many's requests to meet in one batch on a busy machine
    guard = scripted_judge(red_is_unsafe, cache_size=0, max_wait_ms=50)
    yield guard
    guard.close()


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (32, 32), colour).save(path)
    return path


@pytest.fixture
def red_png(tmp_path: Path) -> Path:
    return _png(tmp_path / "red.png", (220, 20, 20))


@pytest.fixture
def blue_png(tmp_path: Path) -> Path:
    return _png(tmp_path / "blue.png", (20, 40, 200))


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
