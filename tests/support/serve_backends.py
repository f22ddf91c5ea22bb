"""Backends for server processes under test, loaded with ``--backend-factory tests.support.serve_backends:NAME``.

Each factory takes the JudgeConfig and returns a ScriptedBackend, so a real server process
answers exactly what a test expects. ``OMNIGUARD_TEST_DELAY_S`` sets model time per batch.
"""

from __future__ import annotations

import os

import numpy as np

from omniguard_plugins.config import JudgeConfig
from omniguard_plugins.media import DecodedAudio, DecodedImage, DecodedMedia, DecodedVideo
from omniguard_plugins.testing import ScriptedBackend, keyword_handler

KEYWORDS = {"bomb": "S9", "kill": "S1"}


def _delay() -> float:
    return float(os.environ.get("OMNIGUARD_TEST_DELAY_S", "0"))


def describe(media: list[DecodedMedia]) -> str:
    """What reached the model, e.g. ``image 32x24 red; audio 1.00s``."""
    out = []
    for m in media:
        if isinstance(m, DecodedImage):
            r, g, b = np.asarray(m.image, dtype=np.float32).reshape(-1, 3).mean(axis=0)
            colour = "red" if r > 150 and g < 100 else "blue" if b > 150 and r < 100 else "other"
            out.append(f"image {m.image.width}x{m.image.height} {colour}")
        elif isinstance(m, DecodedAudio):
            out.append(f"audio {m.duration_s:.2f}s")
        elif isinstance(m, DecodedVideo):
            out.append(f"video {m.frames.shape[0]}f {m.frames.shape[2]}x{m.frames.shape[1]}")
    return "; ".join(out) or "none"


def echo_handler(prompt: str, media: list[DecodedMedia]) -> str:
    """Safe, with a critique that echoes the prompt's last line and the media it got."""
    last = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    return f"- Safety Assessment: safe\n- Categories: None\n- Assessment: echo[{last}] media[{describe(media)}]"


_keywords = keyword_handler(KEYWORDS)


def keywords_and_red_images(prompt: str, media: list[DecodedMedia]) -> str:
    """Keyword verdicts, plus: a mostly red image is violent (S1)."""
    if "red" in describe(media):
        return "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: The image shows blood."
    return _keywords(prompt, media)


def echo(config: JudgeConfig) -> ScriptedBackend:
    return ScriptedBackend(echo_handler, delay_s=_delay())


def keywords(config: JudgeConfig) -> ScriptedBackend:
    return ScriptedBackend(keywords_and_red_images, delay_s=_delay())
