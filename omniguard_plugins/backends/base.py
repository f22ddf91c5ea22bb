"""The one seam between the judge and a model: ``Backend.generate(requests) -> results``.

A backend receives fully prepared requests (rendered prompt text, decoded media in order, the
mode and a forced answer prefix) and returns the raw text it generated for each, in order.
It never parses verdicts and never sees adapters. The micro-batcher calls it from one worker
thread, so a backend need not be thread-safe.

Everything else the judge may use is declared here too, so it never probes a backend with
``getattr`` or decides by its name: ``prepare(request) -> request`` runs in the caller's
thread before queueing (CPU preprocessing of one request overlaps the model running the batch
before it; thread-safe, raising only ``OmniGuardError``), ``prepares_in_caller`` says whether
that is real work an async caller should move off its event loop, and ``model_id`` names the
model in cache keys. :class:`BaseBackend` gives the defaults; a backend only writes ``generate``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..media import DecodedMedia
from ..verdict import Mode

__all__ = ["Backend", "BaseBackend", "GenerationRequest", "GenerationResult"]


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
    @property
    def prepares_in_caller(self) -> bool:
        """``prepare`` does enough CPU work (tokenising, image patches) that async callers should
        run it off their event loop (a read-only property: a backend may decide it per device)."""
        ...

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """CPU preprocessing in the caller's thread; the identity when there is none."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run one batch. Raise to fail the whole batch; the batcher retries items one by one."""
        ...

    def close(self) -> None: ...


class BaseBackend(ABC):
    """The defaults of the seam: no caller-side preparation, nothing to close."""

    model_id: str = "unknown"
    prepares_in_caller: bool = False

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return request

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run one batch, results in the order of ``requests``."""

    def close(self) -> None:
        return None
