"""Scripted backends for door tests, for server processes (``--backend-factory
tests.support.door_backends:NAME``) and in-process judges alike: each verdict depends on what
reached the model, media included.

- text: ``bomb`` is S9, ``kill`` is S1 (the conversation only, never the policy text);
- a mostly red image or video frame is S1;
- audio louder than a whisper (RMS over 0.05) is S11, so a tone is unsafe and silence is safe.
"""

from __future__ import annotations

import numpy as np

from omniguard_plugins.answer_format import write_answer
from omniguard_plugins.config import JudgeConfig
from omniguard_plugins.media import DecodedAudio, DecodedMedia
from omniguard_plugins.testing import ScriptedBackend, is_mostly_red, keyword_handler

KEYWORDS = {"bomb": "S9", "kill": "S1"}
_keywords = keyword_handler(KEYWORDS)


def loud(item: DecodedMedia) -> bool:
    if not isinstance(item, DecodedAudio) or not len(item.samples):
        return False
    return float(np.sqrt(np.mean(np.square(item.samples.astype(np.float64))))) > 0.05


def handler(prompt: str, media: list[DecodedMedia]) -> str:
    if any(is_mostly_red(m) for m in media):
        return write_answer(safe=False, categories=["S1"], critique="The picture shows blood.")
    if any(loud(m) for m in media):
        return write_answer(safe=False, categories=["S11"], critique="The recording is a scream.")
    return _keywords(prompt, media)


def doors(config: JudgeConfig) -> ScriptedBackend:
    return ScriptedBackend(handler)
