"""Backends for reliability runs, loaded with ``--backend-factory tests.support.reliability_backends:NAME``.

``soak``: a scripted model with a batch cost (``SOAK_BASE_MS`` per batch plus ``SOAK_ITEM_MS``
per request, slept in the one worker thread, as a model would hold it) whose answers echo the
request id found in the text (``rid=...``), so an answer given to the wrong request is caught.
Markers in the text inject faults: ``FAULT-raise`` (the backend raises), ``FAULT-garbage`` (an
answer that does not parse), ``FAULT-slow`` (a batch that takes 3x as long), ``FAULT-hang``
(a batch that holds the worker for ``SOAK_HANG_S``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence

from omniguard_plugins.answer_format import write_answer
from omniguard_plugins.backends.base import BaseBackend, GenerationRequest, GenerationResult
from omniguard_plugins.config import JudgeConfig

RID = re.compile(r"rid=([0-9a-f]{12})")
UNSAFE_WORD = "bomb"


def _conversation(prompt: str) -> str:
    """The judged text only: the policy part of the prompt names words like 'weapons' too."""
    return prompt.split("<BEGIN CONVERSATION>", 1)[-1].split("<END CONVERSATION>", 1)[0]


class SoakBackend(BaseBackend):
    model_id = "soak"

    def __init__(self, base_s: float, item_s: float, hang_s: float) -> None:
        self.base_s = base_s
        self.item_s = item_s
        self.hang_s = hang_s

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        texts = [_conversation(r.prompt) for r in requests]
        cost = self.base_s + self.item_s * len(requests)
        if any("FAULT-slow" in t for t in texts):
            cost *= 3
        if any("FAULT-hang" in t for t in texts):
            cost = self.hang_s
        time.sleep(cost)
        if any("FAULT-raise" in t for t in texts):
            raise RuntimeError("injected fault: the model raised")
        return [self._answer(req, text) for req, text in zip(requests, texts)]

    def _answer(self, req: GenerationRequest, text: str) -> GenerationResult:
        if "FAULT-garbage" in text:
            return GenerationResult(text="%%%% the model wrote noise %%%%")
        rid = RID.search(text)
        echo = f"rid={rid.group(1)}" if rid else "rid=none"
        unsafe = UNSAFE_WORD in text.lower()
        answer = write_answer(safe=not unsafe, categories=["S9"] if unsafe else [], critique=echo)
        if req.mode == "verdict":
            answer = answer.split("\n- Assessment", 1)[0]
        return GenerationResult(text=answer, new_tokens=len(answer.split()))


def soak(config: JudgeConfig) -> SoakBackend:
    return SoakBackend(float(os.environ.get("SOAK_BASE_MS", "120")) / 1000.0,
                       float(os.environ.get("SOAK_ITEM_MS", "5")) / 1000.0,
                       float(os.environ.get("SOAK_HANG_S", "1.5")))


def burst(config: JudgeConfig | None) -> SoakBackend:
    """The burst test's model: ``burst.BATCH_S`` a batch whatever its size (64 requests/s at
    the default max_batch of 16), answers echoing ``rid=...``."""
    return SoakBackend(float(os.environ.get("BURST_BATCH_MS", "250")) / 1000.0, 0.0, 0.0)
