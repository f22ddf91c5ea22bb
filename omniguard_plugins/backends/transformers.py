"""In-process Qwen2.5-Omni *thinker* backend (GPU or CPU), batched and greedy.

Only the thinker is loaded from a full OmniGuard checkpoint: the talker and token2wav would
only cost memory (the guard answers in text). A batch is one prefill then a greedy decode loop
of our own over the same KV cache:

- The ~450 tokens of policy text every prompt starts with are prefilled once per policy and
  their KV copied into each batch laid out as ``[policy | left-padded rest]``: a batch
  computes only the conversation, the media and the answer prefix.
- ``verdict``: the answer is forced to start with ``- Safety Assessment:``; the prefill's last
  logits decide the label, and only rows not labelled safe decode on, each until its
  Categories line is complete.
- ``critique``: the full answer up to EOS or ``max_new_tokens``.
- ``score``: the prefill alone (logits of the last position only); P(unsafe) = softmax over
  the first tokens where " safe" and " unsafe" differ.

A CUDA out-of-memory error splits the batch in halves and retries, down to one request.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ModelLoadError
from ..media import DecodedAudio, DecodedImage, DecodedVideo
from ..verdict import truncate_to_verdict
from .base import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    import torch

    from ..config import JudgeConfig

__all__ = ["TransformersBackend"]

log = logging.getLogger("omniguard")

#: a verdict is at most this many new tokens (label + a list of categories)
VERDICT_MAX_NEW_TOKENS = 40
_CATEGORIES_DONE = re.compile(r"categor(?:y|ies)\s*:[^\n]*\n", re.IGNORECASE)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                "fp32": torch.float32, "float32": torch.float32}[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32") from None


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the model hub answers at all (one TCP connect), honouring HF_HUB_OFFLINE."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


class TransformersBackend:
    """Runs an OmniGuard checkpoint in this process. Build with :meth:`from_pretrained`."""

    def __init__(self, model: Any, processor: Any, *, model_id: str, device: str) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_id = model_id
        self.device = device
        #: verdict-mode token cap; a real verdict ("- Safety Assessment: unsafe\n- Categories: S1, S10") is ~12
        self.verdict_max_new_tokens = VERDICT_MAX_NEW_TOKENS
        #: benchmarks on random weights: run every critique to max_new_tokens
        self.ignore_eos = False
        #: verdict mode decides the label in one forward pass and generates only for unsafe rows
        self.label_first = True
        #: benchmarks on random weights: take the likelier of safe/unsafe as the label even when
        #: neither is the arg-max (a trained checkpoint always puts one of them on top)
        self.label_from_pair = False
        #: prompt lengths of the last generate call (benchmarks compute the prefill floor from them)
        self.last_prompt_tokens: list[int] = []
        #: tokens the last generate call actually prefilled (each prompt less a reused prefix)
        self.last_computed_tokens: list[int] = []

        # -- fast paths: each gives the plain path's answers (tests) and can be switched off
        #    for a benchmark row (``omniguard bench --without <name>``)
        #: reuse the KV of the policy text shared by a batch's prompts (computed once per policy)
        self.prefix_cache = True
        #: run the processor in callers' threads (``prepare``) rather than in the batch worker.
        #: On by default only on a GPU: there the worker waits on the device while callers' cores
        #: preprocess; on the CPU the same cores run the model, and the CPU bench showed no gain
        self.prepare_in_caller = device.startswith("cuda")
        #: fill media placeholders from cached tower outputs (by content hash): a conversation's
        #: image goes through the vision tower once, not on every later check
        self.cache_media_features = True
        #: verdicts asked to explain unsafe rows decode the critique straight on from the verdict's
        #: KV, instead of the judge sending a follow-up request that prefills everything again
        self.continue_explanations = True
        #: decode over persistent static KV buffers with one captured CUDA graph per batch size
        #: (eager static steps on the CPU). Off until a GPU benchmark shows it pays
        self.decode_graphs = False
        #: the largest decode batch the static buffers hold (larger batches decode dynamically)
        self.decode_max_batch = 32

        from ._media_features import KINDS as MEDIA_KINDS
        from ._media_features import MediaFeatureCache

        self._prefix = _PrefixKV()
        self._media_features = MediaFeatureCache()
        self._media_token_ids = {kind: self.tokenizer.convert_tokens_to_ids(token) for kind, token, _ in MEDIA_KINDS}
        self._static: Any = None
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        # the thinker's forward ignores ``logits_to_keep`` and projects every position onto the
        # 152k vocabulary ([32, 570, 152064] bf16 is 5.5 GB); only the last position is ever read
        self._last_logits_only = False
        model.lm_head.register_forward_pre_hook(self._keep_last_position)
        self._eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        # tokens that can end a line: only after one can a verdict's Categories line be complete
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self._newline_ids = frozenset(i for i, t in enumerate(vocab) if t and ("\n" in t or "\u010a" in t))
        self._lock = threading.Lock()  # generate may be called from tools outside the batcher

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_config(cls, config: JudgeConfig) -> TransformersBackend:
        backend = cls.from_pretrained(config.model, device=config.device, dtype=config.dtype)
        backend.decode_graphs = config.decode_graphs
        return backend

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike[str], *, device: str = "auto", dtype: str = "auto") -> TransformersBackend:
        try:
            import torch  # noqa: F401 - fail here, with the install hint, not deep inside transformers
            from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerForConditionalGeneration
        except ImportError as exc:
            raise ModelLoadError(
                f"the transformers backend needs torch and transformers ({exc.name} is missing); "
                "install omniguard-plugins[transformers]"
            ) from None
        device = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, device)
        name = str(model)
        # a hub id with no reachable hub would retry for minutes: look in the local cache only
        local_only = Path(name).exists() or not _hub_reachable()
        try:
            processor = Qwen2_5OmniProcessor.from_pretrained(name, local_files_only=local_only)
            thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
                name, dtype=torch_dtype, attn_implementation="sdpa", local_files_only=local_only
            )
        except (OSError, ValueError, EnvironmentError) as exc:
            local = Path(name).exists()
            hint = "is not a loadable checkpoint folder" if local else "could not be fetched (no local folder, hub unreachable?)"
            raise ModelLoadError(
                f"OmniGuard model {name!r} {hint}: set OMNIGUARD_MODEL to a local OmniGuard checkpoint folder, "
                f"or OMNIGUARD_URL to a running `omniguard serve` / vLLM endpoint"
            ) from exc
        thinker.to(device)
        thinker.eval()
        processor.tokenizer.padding_side = "left"
        return cls(thinker, processor, model_id=name, device=device)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def close(self) -> None:
        self.model = None
        self._prefix.clear()
        self._media_features.clear()
        self._static = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ batching

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.model is None:
            raise BackendError("the backend is closed")
        with self._lock:
            self.last_prompt_tokens, self.last_computed_tokens = [], []
            return self._generate_splitting(list(requests))

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

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Run the processor (tokens, image patches, audio features) for one request in the
        caller's thread, so the batch worker only collates and the model is not kept waiting."""
        if not self.prepare_in_caller or request.prepared is not None:
            return request
        return replace(request, prepared=self._encode_one(request))

    def encode(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        """The model inputs for these requests, left-padded into one batch (public so tests can
        assert on it). Requests already prepared are only collated."""
        rows = [r.prepared if r.prepared is not None else self._encode_one(r) for r in requests]
        return _collate(rows, self.tokenizer.pad_token_id)

    def _encode_one(self, req: GenerationRequest) -> dict[str, Any]:
        """The processor's output for one request, unpadded. One request per call keeps the
        tokenizer's padding state untouched, so callers' threads may run this at once."""
        images = [m.image for m in req.media if isinstance(m, DecodedImage)]
        audios = [m.samples for m in req.media if isinstance(m, DecodedAudio)]
        videos = [m.frames for m in req.media if isinstance(m, DecodedVideo)]
        fps = [m.fps for m in req.media if isinstance(m, DecodedVideo)]
        if len(images) + len(audios) + len(videos) != len(req.media):  # pragma: no cover
            raise BackendError(f"unknown media {[type(m).__name__ for m in req.media]}")
        kwargs: dict[str, Any] = {"text": [self._chat_text(req) + req.prefix], "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        if audios:
            kwargs["audio"] = audios
        if videos:
            kwargs["videos"] = videos
            kwargs["videos_kwargs"] = {"fps": fps[0]}
        try:
            row = dict(self.processor(**kwargs))
        except (ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise BackendError(f"the processor rejected the request: {str(exc).splitlines()[0][:200]}") from exc
        if videos and "video_second_per_grid" in row:
            # the processor takes one fps per call; each video keeps its own sampling rate
            import torch

            step = self.processor.video_processor.temporal_patch_size
            row["video_second_per_grid"] = torch.tensor([step / f for f in fps], dtype=torch.float32)
        return row

    def _chat_text(self, req: GenerationRequest) -> str:
        """The chat-templated prompt: the text, then one placeholder per media item."""
        content: list[dict[str, Any]] = [{"type": "text", "text": req.prompt}]
        content += [{"type": m.kind} for m in req.media]  # "image", "audio", "video"
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def _run(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Run requests in groups that share a policy prefix (and, for the label modes, an answer
        prefix): usually one group, so one forward pass."""
        groups: dict[tuple[str, str, bool], list[int]] = {}
        for i, req in enumerate(requests):
            shared = req.prompt[: req.shared_prefix_chars] if self.prefix_cache else ""
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

        mode = requests[0].mode
        prefix = requests[0].prefix
        with torch.inference_mode():
            if mode == "score":
                forced, safe_id, unsafe_id = self._score_tokens(prefix)
                state = self._prefill(requests, forced=forced, keep_cache=False)
                p_unsafe = _pair_probability(state.logits, safe_id, unsafe_id)
                results = [
                    GenerationResult(text=f"{r.prefix} {'unsafe' if p >= 0.5 else 'safe'}", score=p, new_tokens=0)
                    for r, p in zip(requests, p_unsafe)
                ]
            else:
                state = self._prefill(requests)
                label = self._label_tokens(prefix) if mode == "verdict" and self.label_first else None
                if label is None:
                    results = self._continue(requests, state, range(len(requests)), state.logits.argmax(dim=-1).tolist())
                else:
                    results = self._verdict(requests, state, *label)
        return [replace(r, prompt_tokens=n) for r, n in zip(results, state.prompt_tokens)]

    def _verdict(self, requests: list[GenerationRequest], state: _Prefill, safe_id: int, unsafe_id: int) -> list[GenerationResult]:
        """Label first: the prefill's last logits decide safe/unsafe for the whole batch; only rows
        whose label is not safe go on decoding their Categories line, from the prefill's own KV.

        Greedy decoding picks the arg-max token, so a row whose arg-max is the first token of
        " safe" is exactly what greedy generation would label safe, without generating.
        """
        p_unsafe = _pair_probability(state.logits, safe_id, unsafe_id)
        top = state.logits.argmax(dim=-1).tolist()
        results: list[GenerationResult | None] = [None] * len(requests)
        go_on: list[int] = []
        first: list[int] = []
        for i, (req, best, p) in enumerate(zip(requests, top, p_unsafe)):
            is_safe = p < 0.5 if self.label_from_pair else best == safe_id
            if is_safe:
                results[i] = GenerationResult(text=f"{req.prefix} safe", score=p, new_tokens=1)
            else:
                go_on.append(i)
                first.append(unsafe_id if self.label_from_pair else best)
        if go_on:
            for i, res in zip(go_on, self._continue(requests, state, go_on, first)):
                results[i] = replace(res, score=p_unsafe[i])
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ prefill and decode

    def _prefill(self, requests: list[GenerationRequest], *, forced: Sequence[int] = (), keep_cache: bool = True) -> _Prefill:
        """One forward pass over the batch's prompts (plus ``forced`` answer tokens), starting from
        the cached KV of their shared policy prefix when there is one."""
        import torch

        batch = self.encode(requests)
        ids: torch.Tensor = batch.pop("input_ids")
        mask: torch.Tensor = batch.pop("attention_mask")
        if forced:
            extra = torch.tensor([list(forced)] * ids.shape[0], dtype=ids.dtype)
            ids, mask = torch.cat([ids, extra], dim=1), torch.cat([mask, torch.ones_like(extra)], dim=1)
        lengths = mask.sum(dim=1)
        self.last_prompt_tokens += lengths.tolist()
        media = dict(batch)  # on the CPU: moved to the device only where the model reads it
        from ._media_features import media_keys

        keys = media_keys(requests) if self.cache_media_features else None
        shared = self._shared_prefix(requests, ids, lengths)
        cache = None
        if shared is not None:
            prefix_ids, prefix_kv = shared
            # [prefix | left-padded rest]: the prefix's KV is reused, only the rest is computed
            width = int((lengths - len(prefix_ids)).max())
            rest_mask = torch.arange(width) >= (width - (lengths - len(prefix_ids)))[:, None]
            rest = torch.where(rest_mask, ids[:, -width:], self.tokenizer.pad_token_id)
            ids = torch.cat([torch.tensor(prefix_ids, dtype=ids.dtype).expand(len(requests), -1), rest], dim=1)
            mask = torch.cat([torch.ones(len(requests), len(prefix_ids), dtype=mask.dtype), rest_mask.to(mask.dtype)], dim=1)
            positions = self._positions(ids, mask, batch)
            cache = copy.deepcopy(prefix_kv)
            cache.batch_repeat_interleave(len(requests))
            self.last_computed_tokens += (lengths - len(prefix_ids)).tolist()
            out = self._forward_with_media(rest, mask, positions[:, :, len(prefix_ids):], cache, media, keys)
        else:
            positions = self._positions(ids, mask, batch)
            self.last_computed_tokens += lengths.tolist()
            out = self._forward_with_media(ids, mask, positions, None, media, keys, use_cache=keep_cache)
        next_position = positions[:, :, -1].max(dim=0).values + 1
        return _Prefill(
            prompt_tokens=lengths.tolist(),
            logits=out.logits[:, -1, :].float(),
            cache=_output_cache(out) if keep_cache else None,
            attention_mask=mask.to(self.device),
            next_position=next_position.to(self.device),
        )

    def _continue(self, requests: list[GenerationRequest], state: _Prefill, rows: Sequence[int], first: Sequence[int]) -> list[GenerationResult]:
        """Greedy decoding of ``rows`` from the prefill's KV, ``first`` being each row's first new
        token. Rows leave the batch as they finish (EOS, a complete Categories line in verdict
        mode, or the token cap)."""
        import torch

        rows = list(rows)
        reqs = [requests[i] for i in rows]
        # an explained verdict decodes on like a critique (its rows here are the unsafe ones)
        verdict = reqs[0].mode == "verdict" and not (reqs[0].explain_unsafe and self.continue_explanations)
        max_new = self.verdict_max_new_tokens if verdict else max(r.max_new_tokens for r in reqs)
        generated: list[list[int]] = [[t] for t in first]
        live = [not self._finished(r, g, max_new, verdict) for r, g in zip(reqs, generated)]
        if any(live):
            index = torch.tensor(rows, device=self.device)
            position = state.next_position[index]
            run = self._decode_run(state, index, len(rows) != len(requests), max_new)
            slots = list(range(len(reqs)))  # batch slot -> index into reqs
            current = torch.tensor(list(first), device=self.device)
            while any(live[r] for r in slots):
                keep_slots = [s for s, r in enumerate(slots) if live[r]]
                if run.should_shrink(len(keep_slots), len(slots)):
                    run.keep(keep_slots)
                    keep = torch.tensor(keep_slots, device=self.device)
                    position, current = position[keep], current[keep]
                    slots = [slots[s] for s in keep_slots]
                current = run.step(current, position)
                position = position + 1
                for slot, token in enumerate(current.tolist()):
                    r = slots[slot]
                    if live[r]:
                        generated[r].append(token)
                        live[r] = not self._finished(reqs[r], generated[r], max_new, verdict)
        results = []
        for req, ids in zip(reqs, generated):
            text = req.prefix + self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(GenerationResult(text=truncate_to_verdict(text) if verdict else text, new_tokens=len(ids)))
        return results

    def _decode_run(self, state: _Prefill, index: Any, select: bool, max_new: int) -> Any:
        """Decode steps over the static buffers (``decode_graphs``) or the prefill's own KV."""
        mask = state.attention_mask[index] if select else state.attention_mask
        if self.decode_graphs and len(index) <= self.decode_max_batch:
            if self._static is None or self._static.max_batch < len(index):
                from ._static_decode import StaticDecoder

                self._static = StaticDecoder(self.model, cache_arg=self._cache_arg, max_batch=self.decode_max_batch,
                                             capture=True)
            layer_kv = [(k[index], v[index]) if select else (k, v) for k, v in _layer_kv(state.cache)]
            return self._static.load(layer_kv, mask, max_new)
        if select:
            state.cache.batch_select_indices(index)
        return _DynamicRun(self, state.cache, mask)

    def _finished(self, req: GenerationRequest, ids: list[int], max_new: int, verdict: bool) -> bool:
        if len(ids) >= max_new:
            return True
        if ids[-1] == self._eos_id and not self.ignore_eos:
            return True
        if verdict and ids[-1] in self._newline_ids:
            return bool(_CATEGORIES_DONE.search(req.prefix + self.tokenizer.decode(ids, skip_special_tokens=True)))
        return False

    def _forward_with_media(self, ids: Any, mask: Any, positions: Any, cache: Any, media: dict[str, Any],
                            keys: dict[str, list[Any]] | None, *, use_cache: bool = True) -> Any:
        """A prefill forward whose media placeholders are filled from the tower-output cache
        (``keys`` given and media present), or by the model from the raw media."""
        if keys is None or not any(keys.values()):
            media = {k: self._to_device(v) for k, v in media.items()}
            return self._forward(ids, mask, positions, cache, media, use_cache=use_cache)
        # only the media not cached yet are moved to the device (for their tower)
        embeds = self._media_features.embed(self.model, ids, media, keys, self._media_token_ids, self._to_device)
        return self._forward(None, mask, positions, cache, {}, use_cache=use_cache, embeds=embeds)

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any, media: dict[str, Any], *, use_cache: bool = True,
                 embeds: Any = None) -> Any:
        """One thinker forward; ``logits`` holds the last position only."""
        kwargs: dict[str, Any] = {self._cache_arg: cache} if cache is not None else {}
        if embeds is not None:
            kwargs["inputs_embeds"] = embeds
        else:
            kwargs["input_ids"] = self._to_device(ids)
        self._last_logits_only = True
        try:
            return self.model(
                attention_mask=self._to_device(mask), position_ids=self._to_device(positions), use_cache=use_cache,
                logits_to_keep=1, use_audio_in_video=False, **kwargs, **media,
            )
        finally:
            self._last_logits_only = False

    def _keep_last_position(self, module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._last_logits_only and args and args[0].dim() == 3:
            return (args[0][:, -1:, :], *args[1:])
        return None

    def _positions(self, ids: Any, mask: Any, batch: Any) -> Any:
        """Qwen2.5-Omni's 3-D (time, height, width) rope positions, computed on the CPU before the
        batch moves (the model's own routine loops over rows in Python)."""
        features = batch.get("feature_attention_mask")
        positions, _ = self.model.get_rope_index(
            ids, batch.get("image_grid_thw"), batch.get("video_grid_thw"), mask, False,
            features.sum(dim=-1) if features is not None else None, batch.get("video_second_per_grid"),
        )
        return positions

    def _shared_prefix(self, requests: list[GenerationRequest], ids: Any, lengths: Any) -> tuple[tuple[int, ...], Any] | None:
        """The token ids and cached KV of the batch's shared policy prefix, or None when there is
        none or a row does not start with exactly those tokens."""
        req = requests[0]
        if not self.prefix_cache or req.shared_prefix_chars <= 0:
            return None
        prefix_ids = self._prefix_ids(req)
        if prefix_ids is None or int(lengths.min()) <= len(prefix_ids):
            return None
        width = ids.shape[1]
        expected = ids.new_tensor(prefix_ids)
        for row, length in enumerate(lengths.tolist()):
            start = width - length  # rows are left-padded
            if not bool((ids[row, start : start + len(prefix_ids)] == expected).all()):
                self._prefix.misses += 1
                return None
        kv = self._prefix.get(prefix_ids)
        if kv is None:
            import torch

            positions = torch.arange(len(prefix_ids)).view(1, 1, -1).expand(3, 1, -1)
            out = self._forward(expected[None], torch.ones(1, len(prefix_ids), dtype=torch.long), positions, None, {})
            kv = self._prefix.put(prefix_ids, _output_cache(out))
        return prefix_ids, kv

    def _prefix_ids(self, req: GenerationRequest) -> tuple[int, ...] | None:
        """Token ids of the chat-templated text up to the end of the request's shared prefix
        (the media placeholders come after the text, so they never change it)."""
        shared = req.prompt[: req.shared_prefix_chars]
        if shared in self._prefix.ids:
            return self._prefix.ids[shared]
        chat = self._chat_text(req)
        at = chat.find(req.prompt)
        ids = tuple(self.tokenizer(chat[: at + req.shared_prefix_chars])["input_ids"]) if at >= 0 else None
        if len(self._prefix.ids) >= 4 * self._prefix.capacity:
            self._prefix.ids.clear()  # many one-off policies: keep the map bounded
        self._prefix.ids[shared] = ids
        return ids

    def _to_device(self, value: Any) -> Any:
        import torch

        if not isinstance(value, torch.Tensor):
            return value
        value = value.to(self.device, non_blocking=True)
        return value.to(self.model.dtype) if torch.is_floating_point(value) else value

    def _label_tokens(self, prefix: str) -> tuple[int, int] | None:
        """(first token of " safe", of " unsafe") right after ``prefix``, or None when the
        tokenizer shares tokens between them (then the generic path runs)."""
        try:
            forced, safe_id, unsafe_id = self._score_tokens(prefix)
        except BackendError:
            return None
        return None if forced else (safe_id, unsafe_id)

    def _score_tokens(self, prefix: str) -> tuple[list[int], int, int]:
        """The ids forced after the prefix, then the first ids where ' safe' and ' unsafe' differ."""
        tok = self.tokenizer
        safe = tok(prefix + " safe", add_special_tokens=False)["input_ids"]
        unsafe = tok(prefix + " unsafe", add_special_tokens=False)["input_ids"]
        base = tok(prefix, add_special_tokens=False)["input_ids"]
        common = 0
        while common < min(len(safe), len(unsafe)) and safe[common] == unsafe[common]:
            common += 1
        if common >= min(len(safe), len(unsafe)):
            raise BackendError("cannot tell ' safe' from ' unsafe' with this tokenizer")
        forced = safe[len(base):common] if safe[: len(base)] == base else []
        return forced, safe[common], unsafe[common]


@dataclass
class _Prefill:
    #: each row's prompt length in tokens (forced answer tokens included)
    prompt_tokens: list[int]
    #: [batch, vocab] float logits of each row's last prompt position
    logits: torch.Tensor
    #: the KV of the whole prompt (None when the caller needs no decoding)
    cache: Any
    #: [batch, prompt width] on the device; decode steps append to it
    attention_mask: torch.Tensor
    #: [batch] rope position of each row's next token
    next_position: torch.Tensor


class _PrefixKV:
    """KV of shared prompt prefixes (the policy text), computed once each and copied into every
    batch that starts with them, so a batch prefills only what differs between its requests.
    Few entries: one per (policy, template) in use."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        #: shared prompt text -> token ids of the chat-templated text up to its end (None: not found)
        self.ids: dict[str, tuple[int, ...] | None] = {}
        self._kv: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, ids: tuple[int, ...]) -> Any:
        kv = self._kv.get(ids)
        if kv is not None:
            self._kv.move_to_end(ids)
            self.hits += 1
        return kv

    def put(self, ids: tuple[int, ...], kv: Any) -> Any:
        self.misses += 1
        self._kv[ids] = kv
        while len(self._kv) > self.capacity:
            self._kv.popitem(last=False)
        return kv

    def clear(self) -> None:
        self._kv.clear()
        self.ids.clear()

    def __len__(self) -> int:
        return len(self._kv)


class _DynamicRun:
    """Decode steps that grow the prefill's DynamicCache (no graphs; any batch size)."""

    def __init__(self, backend: TransformersBackend, cache: Any, mask: torch.Tensor) -> None:
        self.backend, self.cache, self.mask = backend, cache, mask

    def should_shrink(self, live: int, slots: int) -> bool:
        return live <= 0.75 * slots

    def keep(self, slots: list[int]) -> None:
        import torch

        index = torch.tensor(slots, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.backend._forward(tokens[:, None], self.mask, positions.view(1, -1, 1).expand(3, -1, -1), self.cache, {})
        return out.logits[:, -1, :].argmax(dim=-1)


def _layer_kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a DynamicCache, across transformers versions."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache))


def _collate(rows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """One batch from per-request processor outputs: token rows left-padded, media tensors
    (patches, grids, audio features) concatenated in request order, as one processor call
    over the whole batch would give them."""
    import torch

    width = max(int(r["input_ids"].shape[1]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = int(row["input_ids"].shape[1])
        ids[i, width - n :] = row["input_ids"][0]
        mask[i, width - n :] = row["attention_mask"][0]
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    for key in dict.fromkeys(k for row in rows for k in row if k not in ("input_ids", "attention_mask")):
        parts = [row[key] for row in rows if key in row]
        batch[key] = torch.cat(parts, dim=0) if isinstance(parts[0], torch.Tensor) else [x for p in parts for x in p]
    return batch


def _pair_probability(logits: torch.Tensor, safe_id: int, unsafe_id: int) -> list[float]:
    """P(unsafe) from the two label tokens' logits only."""
    import torch

    pair = torch.stack([logits[:, safe_id], logits[:, unsafe_id]], dim=-1)
    return torch.softmax(pair, dim=-1)[:, 1].tolist()


def _output_cache(out: Any) -> Any:
    """The KV cache of a forward output (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)
