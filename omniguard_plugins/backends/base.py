"""The one seam between the judge and a model: ``Backend.generate(requests) -> results``.

A backend receives fully prepared requests (rendered prompt text, decoded media in order, the
mode and a forced answer prefix) and returns the raw text it generated for each, in order.
It never parses verdicts and never sees adapters. The micro-batcher calls it from one worker
thread, so a backend need not be thread-safe.

A backend may also define ``prepare(request) -> request``: the judge calls it in the caller's
thread before queueing, so CPU preprocessing of one request overlaps the model running the
batch before it. ``prepare`` must be thread-safe and raise only ``OmniGuardError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..media import DecodedMedia
from ..verdict import Mode

__all__ = ["Backend", "GenerationRequest", "GenerationResult"]


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    #: the user-message text, already rendered in the checkpoint's trained format
    prompt: str
    #: decoded media, in the order they follow the text
    media: tuple[DecodedMedia, ...] = ()
    mode: Mode = "verdict"
    #: cap for critique generation; verdict mode stops at the Categories line on its own
    max_new_tokens: int = 256
    #: text the answer is forced to start with (the known label prefix, or a verdict to explain)
    prefix: str = ""
    #: opaque id for logs and tests; not sent to the model
    request_id: str = field(default="")
    #: leading characters of ``prompt`` shared by every check under the same policy (the policy
    #: text); a backend may cache their KV across requests. 0: nothing known to be shared
    shared_prefix_chars: int = 0
    #: what the backend's optional ``prepare`` made of this request in the caller's thread
    #: (tokens, image patches, audio features), so the batch worker only collates it
    prepared: Any = field(default=None, repr=False)

    #: verdict mode: a backend may decode on past the Categories line into the critique of rows
    #: it labels unsafe (up to ``max_new_tokens``), sparing the judge a follow-up request
    explain_unsafe: bool = False

    @property
    def batch_key(self) -> tuple[str, int, bool]:
        """Requests with the same key may share one generate call."""
        long = self.mode == "critique" or self.explain_unsafe
        return (self.mode, self.max_new_tokens if long else 0, self.explain_unsafe)


@dataclass(frozen=True)
class GenerationResult:
    #: the whole answer, ``prefix`` included
    text: str
    #: P(unsafe) in score mode; None otherwise
    score: float | None = None
    #: tokens generated (for throughput accounting)
    new_tokens: int = 0
    #: prompt tokens the model read (the server's ``usage``); None when the backend does not know
    prompt_tokens: int | None = None


@runtime_checkable
class Backend(Protocol):
    #: identifies the model in cache keys and metrics (e.g. a checkpoint path or URL)
    model_id: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run one batch. Raise to fail the whole batch; the batcher retries items one by one."""
        ...

    def close(self) -> None: ...
