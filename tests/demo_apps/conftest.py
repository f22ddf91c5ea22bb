"""Fixtures for the demo apps: a scripted judge (the tiny model's trigger words and red images
are unsafe), the echo agent without its typing delay, and omni_chat built on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import TINY_TRIGGERS, keyword_handler, scripted_judge
from tests.support.media_makers import RED, png_file

RED_IMAGE = "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: The image shows graphic violence."
#: mostly-red images are unsafe (S1) whatever the text says; else the tiny model's trigger words
red_or_words = keyword_handler(dict(TINY_TRIGGERS), critique="It asks for help with a weapon or a crime.",
                               red_images=True)


@pytest.fixture
def judge() -> Iterator[OmniGuard]:
    with scripted_judge(red_or_words, cache_size=0) as j:
        yield j


@pytest.fixture
def red_png(tmp_path: Path) -> Path:
    return png_file(tmp_path / "red.png", RED, (48, 32))


@pytest.fixture
def echo_agent():
    from demo_apps.omni_chat import Agent, EchoChatModel

    return Agent(EchoChatModel(delay_s=0), "local echo agent")


@pytest.fixture
def chat_app(judge: OmniGuard, echo_agent):
    """omni_chat on the scripted judge, as ``create_app(judge=...)`` builds it."""
    from demo_apps.omni_chat import create_app

    return create_app(judge, banner="SCRIPTED JUDGE: verdicts are not real", agent=echo_agent)
