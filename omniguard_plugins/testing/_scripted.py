"""ScriptedBackend: answers from a function, through the same batcher and parser as a model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..answer_format import truncate_to_verdict, write_answer
from ..backends.base import BaseBackend, GenerationRequest, GenerationResult
from ..media import DecodedMedia
from ..policy import Policy
from ..verdict import parse_output

__all__ = ["ScriptedBackend", "is_mostly_red", "keyword_handler", "scripted_judge"]

Handler = Callable[[str, list[DecodedMedia]], str]


class ScriptedBackend(BaseBackend):
    """A backend whose raw output for each request is ``handler(prompt, media)``.

    The handler writes what the model would write (:func:`~omniguard_plugins.answer_format.write_answer`).
    In ``verdict`` mode the output is cut after the Categories line, as the model's would be;
    in ``score`` mode the score is 1.0 for an unsafe label and 0.0 for a safe one.
    ``calls`` counts backend calls (batches) and ``requests`` every request seen, so tests can
    assert how many judge calls a rail made. ``delay_s`` simulates model time per batch.
    """

    model_id = "scripted"

    def __init__(self, handler: Handler, *, delay_s: float = 0.0) -> None:
        self.handler = handler
        self.delay_s = delay_s
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.requests]

    def reset(self) -> None:
        with self._lock:
            self.calls = 0
            self.requests.clear()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        with self._lock:
            self.calls += 1
            self.requests.extend(requests)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._one(req) for req in requests]

    def _one(self, req: GenerationRequest) -> GenerationResult:
        text = self.handler(req.prompt, list(req.media))
        if not isinstance(text, str):
            raise TypeError(f"ScriptedBackend handler must return str, got {type(text).__name__}")
        score = None
        if req.mode == "verdict":
            text = truncate_to_verdict(text)
        elif req.mode == "score":
            parsed = parse_output(text, Policy())
            score = None if parsed.error else (0.0 if parsed.safe else 1.0)
            text = truncate_to_verdict(text)
        return GenerationResult(text=text, score=score, new_tokens=len(text.split()))


def is_mostly_red(item: DecodedMedia) -> bool:
    """Whether a decoded image (or any video frame) is mostly red: its mean colour has R > 150,
    G < 100 and B < 100. The stand-in for an unsafe picture in tests; the tiny checkpoint was
    trained on the same rule for images judged alone, and agrees with it away from its edge."""
    import numpy as np

    if item.kind == "image":
        pixels = np.asarray(item.image.convert("RGB"), dtype=float).reshape(-1, 3)  # type: ignore[union-attr]
    elif item.kind == "video":
        pixels = np.asarray(item.frames, dtype=float).reshape(-1, 3)  # type: ignore[union-attr]
    else:
        return False
    r, g, b = pixels.mean(axis=0)
    return bool(r > 150 and g < 100 and b < 100)


def keyword_handler(
    unsafe: dict[str, str] | Iterable[str],
    *,
    critique: str = "The content violates the policy.",
    red_images: bool = False,
    image_critique: str = "The image shows graphic violence.",
) -> Handler:
    """A handler that calls text unsafe when it contains a keyword (case-insensitive).

    ``unsafe`` maps keyword -> category code (``{"bomb": "S9"}``), or is a list of keywords
    (category S1). Only the conversation part of the prompt is searched, not the policy text.
    With ``red_images=True`` a mostly red image or video is unsafe (S1) whatever the text says.
    """
    table = dict(unsafe) if isinstance(unsafe, dict) else {k: "S1" for k in unsafe}

    def handler(prompt: str, media: list[DecodedMedia]) -> str:
        if red_images and any(is_mostly_red(m) for m in media):
            return write_answer(safe=False, categories=["S1"], critique=image_critique)
        # the image-only template has no conversation block: then there is no text to search (never
        # the policy text, which names every category)
        convo = (prompt.split("<BEGIN CONVERSATION>", 1)[-1].split("<END CONVERSATION>", 1)[0].lower()
                 if "<BEGIN CONVERSATION>" in prompt else "")
        hits = sorted({code for word, code in table.items() if word.lower() in convo}, key=lambda c: int(c[1:]))
        if hits:
            return write_answer(safe=False, categories=hits, critique=critique)
        return write_answer(safe=True, critique="The content is safe.")

    return handler


def scripted_judge(handler: Handler | dict[str, str] | Iterable[str], **settings: Any):
    """An OmniGuard on a ScriptedBackend. ``handler`` may be a keyword table (see
    :func:`keyword_handler`). Settings are JudgeConfig fields (``on_error``, ``mode``...)."""
    from ..judge import OmniGuard

    if not callable(handler):
        handler = keyword_handler(handler)
    settings.setdefault("max_wait_ms", 2.0)
    return OmniGuard(backend=ScriptedBackend(handler), model="scripted", **settings)
