"""In-process Qwen2.5-Omni *thinker* backend (GPU or CPU), batched and greedy.

A batch runs through the stages of this package: :mod:`.encoding` (processor, collate),
:mod:`.prefill` (one forward pass, reusing the policy prefix's KV), :mod:`.labels` (score mode,
label-first verdicts), :mod:`.decoding` (our own greedy loop over the same KV). Here they are
tied together, with grouping and out-of-memory splitting:

- ``verdict``: the answer is forced to start with the label prefix (``answer_format``); the
  prefill's last logits decide the label, and only rows not labelled safe decode on, each until
  its Categories line is complete.
- ``critique``: the full answer up to EOS or ``max_new_tokens``.
- ``score``: the prefill alone; P(unsafe) from the two label tokens.

A CUDA out-of-memory error splits the batch in halves and retries, down to one request.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import BackendError
from ..base import BaseBackend, GenerationRequest, GenerationResult
from .decoding import Decoder
from .encoding import collate, encode_one
from .fast_paths import BenchKnobs, FastPaths
from .labels import label_first, label_tokens, score_results, score_tokens
from .loading import load_thinker
from .prefill import Prefill, PrefixKV, prefill
from .thinker import Thinker

if TYPE_CHECKING:
    from ...config import JudgeConfig
    from .media_features import MediaFeatureCache
    from .static_decode import StaticDecoder

__all__ = ["TransformersBackend"]

log = logging.getLogger("omniguard")


class _Loaded:
    """What a backend's variants share: the thinker, its caches, one lock, whether it is closed."""

    def __init__(self, thinker: Thinker) -> None:
        from .media_features import MediaFeatureCache

        self.thinker = thinker
        self.prefix = PrefixKV()
        self.features = MediaFeatureCache()
        self.decoder = Decoder(thinker)
        self.lock = threading.Lock()  # generate may be called from tools outside the batcher
        self.closed = False


class TransformersBackend(BaseBackend):
    """Runs an OmniGuard checkpoint in this process. Build with :meth:`from_pretrained`.

    Its :class:`FastPaths` and :class:`BenchKnobs` are fixed; :meth:`variant` gives a backend
    with others over the same loaded model and caches (benchmarks compare paths that way).
    """

    def __init__(self, model: Any, processor: Any, *, model_id: str, device: str, fast_paths: FastPaths | None = None,
                 knobs: BenchKnobs | None = None) -> None:
        self.model_id = model_id
        self._loaded = _Loaded(Thinker(model, processor, device))
        self._owner = True
        self._closed = False
        self._paths = (fast_paths or FastPaths()).resolved(device)
        self._knobs = knobs or BenchKnobs()
        #: prompt lengths of the last generate call (benchmarks compute the prefill floor from them)
        self.last_prompt_tokens: list[int] = []
        #: tokens the last generate call actually prefilled (each prompt less a reused prefix)
        self.last_computed_tokens: list[int] = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: JudgeConfig) -> TransformersBackend:
        return cls.from_pretrained(config.model, device=config.device, dtype=config.dtype,
                                   fast_paths=FastPaths.from_config(config))

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike[str], *, device: str = "auto", dtype: str = "auto",
                        fast_paths: FastPaths | None = None, knobs: BenchKnobs | None = None) -> TransformersBackend:
        thinker, processor, name, device = load_thinker(model, device=device, dtype=dtype)
        return cls(thinker, processor, model_id=name, device=device, fast_paths=fast_paths, knobs=knobs)

    def variant(self, *, fast_paths: FastPaths | None = None, knobs: BenchKnobs | None = None) -> TransformersBackend:
        """A backend over the same loaded model and caches with other switches. Closing it
        closes only the variant; closing the backend it came from closes every variant."""
        other = copy.copy(self)
        other._owner, other._closed = False, False
        other._paths = (fast_paths or self._paths).resolved(self.device)
        other._knobs = knobs or self._knobs
        other.last_prompt_tokens, other.last_computed_tokens = [], []
        return other

    @property
    def fast_paths(self) -> FastPaths:
        return self._paths

    @property
    def knobs(self) -> BenchKnobs:
        return self._knobs

    @property
    def prepares_in_caller(self) -> bool:  # type: ignore[override]
        return self._paths.caller_prepare is True

    @property
    def thinker(self) -> Thinker:
        return self._loaded.thinker

    @property
    def model(self) -> Any:
        return self._loaded.thinker.model

    @property
    def processor(self) -> Any:
        return self._loaded.thinker.processor

    @property
    def tokenizer(self) -> Any:
        return self._loaded.thinker.tokenizer

    @property
    def device(self) -> str:
        return self._loaded.thinker.device

    @property
    def parameter_count(self) -> int:
        return self._loaded.thinker.parameter_count

    @property
    def prefix_kv(self) -> PrefixKV:
        return self._loaded.prefix

    @property
    def media_features(self) -> MediaFeatureCache:
        return self._loaded.features

    @property
    def static_decoder(self) -> StaticDecoder | None:
        return self._loaded.decoder.static

    def close(self) -> None:
        self._closed = True
        if not self._owner or self._loaded.closed:
            return
        loaded = self._loaded
        loaded.closed = True
        loaded.thinker.model = None
        loaded.prefix.clear()
        loaded.features.clear()
        loaded.decoder.clear()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass

    @property
    def context_tokens(self) -> int | None:
        """The thinker's context length (prompt and answer together), from its config."""
        config = self._loaded.thinker.model.config
        text = getattr(config, "text_config", None) or config
        return getattr(text, "max_position_embeddings", None)

    # ------------------------------------------------------------------ the seam

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Run the processor (tokens, image patches, audio features) for one request in the
        caller's thread, so the batch worker only collates and the model is not kept waiting."""
        if not self.prepares_in_caller or request.prepared is not None:
            return request
        return replace(request, prepared=encode_one(self.processor, request, context_tokens=self.context_tokens))

    def encode(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        """The model inputs for these requests, left-padded into one batch (public so tests can
        assert on it). Requests already prepared are only collated."""
        rows = [r.prepared if r.prepared is not None
                else encode_one(self.processor, r, context_tokens=self.context_tokens) for r in requests]
        return collate(rows, self.tokenizer.pad_token_id)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self._closed or self._loaded.closed:
            raise BackendError("the backend is closed")
        with self._loaded.lock:
            self.last_prompt_tokens, self.last_computed_tokens = [], []
            return self._generate_splitting(list(requests))

    # ------------------------------------------------------------------ batching

    def _generate_splitting(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        try:
            return self._run(requests)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(requests) == 1:
                raise BackendError("CUDA out of memory for a single request; lower the media limits") from None
            half = len(requests) // 2
            log.warning("CUDA OOM at batch %d; splitting", len(requests))
            return self._generate_splitting(requests[:half]) + self._generate_splitting(requests[half:])

    def _run(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Run requests in groups that share a policy prefix (and, for the label modes, an answer
        prefix): usually one group, so one forward pass."""
        groups: dict[tuple[str, str, bool], list[int]] = {}
        for i, req in enumerate(requests):
            shared = req.prompt[: req.shared_prefix_chars] if self._paths.prefix_cache else ""
            groups.setdefault((shared, req.prefix if req.mode != "critique" else "", req.explain_unsafe), []).append(i)
        if len(groups) == 1:
            return self._run_group(requests)
        results: list[GenerationResult | None] = [None] * len(requests)
        for rows in groups.values():
            for i, res in zip(rows, self._run_group([requests[i] for i in rows])):
                results[i] = res
        return results  # type: ignore[return-value]

    def _run_group(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        mode, prefix = requests[0].mode, requests[0].prefix
        with torch.inference_mode():
            if mode == "score":
                forced, safe_id, unsafe_id = score_tokens(self.tokenizer, prefix)
                state = self._prefill(requests, forced=forced, keep_cache=False)
                results = score_results(requests, state.logits, safe_id, unsafe_id)
            else:
                state = self._prefill(requests)
                label = label_tokens(self.tokenizer, prefix) if mode == "verdict" and self._paths.label_first else None

                def decode(rows: Sequence[int], first: Sequence[int]) -> list[GenerationResult]:
                    return self._decode(requests, state, rows, first)

                if label is None:
                    results = decode(range(len(requests)), state.logits.argmax(dim=-1).tolist())
                else:
                    results = label_first(requests, state.logits, *label, from_pair=self._knobs.label_from_pair,
                                          decode=decode)
        return [replace(r, prompt_tokens=n) for r, n in zip(results, state.prompt_tokens)]

    def _prefill(self, requests: list[GenerationRequest], *, forced: Sequence[int] = (),
                 keep_cache: bool = True) -> Prefill:
        paths, loaded = self._paths, self._loaded
        state = prefill(loaded.thinker, requests, self.encode(requests), forced=forced, keep_cache=keep_cache,
                        prefix_kv=loaded.prefix if paths.prefix_cache else None,
                        features=loaded.features if paths.media_cache else None)
        self.last_prompt_tokens += state.prompt_tokens
        self.last_computed_tokens += state.computed_tokens
        return state

    def _decode(self, requests: list[GenerationRequest], state: Prefill, rows: Sequence[int],
                first: Sequence[int]) -> list[GenerationResult]:
        reqs = [requests[i] for i in rows]
        # an explained verdict decodes on like a critique (its rows here are the unsafe ones)
        verdict = reqs[0].mode == "verdict" and not (reqs[0].explain_unsafe and self._paths.explain_continue)
        max_new = self._knobs.verdict_max_new_tokens if verdict else max(r.max_new_tokens for r in reqs)
        return self._loaded.decoder.decode(
            requests, state, rows, first, verdict=verdict, max_new=max_new, ignore_eos=self._knobs.ignore_eos,
            graphs=self._paths.decode_graphs, graphs_max_batch=self._paths.decode_max_batch,
        )
