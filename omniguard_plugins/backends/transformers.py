"""In-process Qwen2.5-Omni *thinker* backend (GPU or CPU), batched and greedy.

Only the thinker is loaded from a full OmniGuard checkpoint: the talker and token2wav would
only cost memory (the guard answers in text). Requests of one mode share a left-padded batch:

- ``verdict``: the answer is forced to start with ``- Safety Assessment:`` and each sequence
  stops as soon as its Categories line is complete (a per-sequence stopping criterion).
- ``critique``: the full answer up to EOS or ``max_new_tokens``.
- ``score``: one forward pass over prompt + forced prefix, logits of the last position only;
  P(unsafe) = softmax over the first tokens where " safe" and " unsafe" differ.

A CUDA out-of-memory error splits the batch in halves and retries, down to one request.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import replace
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
        #: prompt lengths of the last batch (benchmarks compute the prefill floor from them)
        self.last_prompt_tokens: list[int] = []
        self._lock = threading.Lock()  # generate may be called from tools outside the batcher

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_config(cls, config: JudgeConfig) -> TransformersBackend:
        return cls.from_pretrained(config.model, device=config.device, dtype=config.dtype)

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

    def encode(self, requests: Sequence[GenerationRequest]) -> Any:
        """The processor's batch for these requests (public so tests can assert on it)."""
        texts: list[str] = []
        images: list[Any] = []
        audios: list[Any] = []
        videos: list[Any] = []
        fps: list[float] = []
        for req in requests:
            content: list[dict[str, Any]] = [{"type": "text", "text": req.prompt}]
            for m in req.media:
                if isinstance(m, DecodedImage):
                    content.append({"type": "image"})
                    images.append(m.image)
                elif isinstance(m, DecodedAudio):
                    content.append({"type": "audio"})
                    audios.append(m.samples)
                elif isinstance(m, DecodedVideo):
                    content.append({"type": "video"})
                    videos.append(m.frames)
                    fps.append(m.fps)
                else:  # pragma: no cover
                    raise BackendError(f"unknown media {type(m).__name__}")
            chat = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            texts.append(chat + req.prefix)
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if images:
            kwargs["images"] = images
        if audios:
            kwargs["audio"] = audios
        if videos:
            kwargs["videos"] = videos
            kwargs["videos_kwargs"] = {"fps": fps[0]}
        try:
            batch = self.processor(**kwargs)
        except (ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise BackendError(f"the processor rejected the request: {str(exc).splitlines()[0][:200]}") from exc
        if videos and "video_second_per_grid" in batch:
            # the processor takes one fps per call; each video keeps its own sampling rate
            import torch

            step = self.processor.video_processor.temporal_patch_size
            batch["video_second_per_grid"] = torch.tensor([step / f for f in fps], dtype=torch.float32)
        return batch

    def _run(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        mode = requests[0].mode
        batch = self._batch(requests)
        self.last_prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        with torch.inference_mode():
            if mode == "score":
                return self._score(requests, batch)
            if mode == "verdict" and self.label_first:
                return self._verdict(requests, batch)
            return self._decode(requests, batch, mode)

    def _verdict(self, requests: list[GenerationRequest], batch: Any) -> list[GenerationResult]:
        """Label first: one forward pass decides safe/unsafe for the whole batch; only rows whose
        label is unsafe (or not a label at all) go on to generate their Categories line.

        Greedy decoding picks the arg-max token, so a row whose arg-max is the first token of
        " safe" is exactly what greedy generation would label safe, without generating.
        """
        import torch

        prefix = requests[0].prefix
        label = self._label_tokens(prefix) if all(r.prefix == prefix for r in requests) else None
        if label is None:
            return self._decode(requests, batch, "verdict")
        safe_id, unsafe_id = label
        try:
            out = self.model(**batch, use_cache=False, logits_to_keep=1)
        except TypeError:  # older signatures
            out = self.model(**batch, use_cache=False)
        logits = out.logits[:, -1, :].float()
        p_unsafe = torch.softmax(torch.stack([logits[:, safe_id], logits[:, unsafe_id]], -1), -1)[:, 1].tolist()
        top = logits.argmax(dim=-1).tolist()
        results: list[GenerationResult | None] = [None] * len(requests)
        go_on: list[int] = []
        fallback: list[int] = []
        for i, (req, best, p) in enumerate(zip(requests, top, p_unsafe)):
            is_safe = p < 0.5 if self.label_from_pair else best == safe_id
            is_unsafe = p >= 0.5 if self.label_from_pair else best == unsafe_id
            if is_safe:
                results[i] = GenerationResult(text=f"{req.prefix} safe", score=p, new_tokens=1)
            elif is_unsafe:
                go_on.append(i)
            else:
                fallback.append(i)
        if go_on:
            cont = [replace(requests[i], prefix=f"{requests[i].prefix} unsafe") for i in go_on]
            for i, res in zip(go_on, self._decode(cont, self._batch(cont), "verdict")):
                results[i] = replace(res, score=p_unsafe[i], new_tokens=res.new_tokens + 1)
        if fallback:
            rest = [requests[i] for i in fallback]
            for i, res in zip(fallback, self._decode(rest, self._batch(rest), "verdict")):
                results[i] = res
        return results  # type: ignore[return-value]

    def _batch(self, requests: list[GenerationRequest]) -> Any:
        import torch

        batch = self.encode(requests).to(self.device)
        for key, value in batch.items():
            if torch.is_floating_point(value):
                batch[key] = value.to(self.model.dtype)
        return batch

    def _label_tokens(self, prefix: str) -> tuple[int, int] | None:
        """(first token of " safe", of " unsafe") right after ``prefix``, or None when the
        tokenizer shares tokens between them (then the generic path runs)."""
        try:
            forced, safe_id, unsafe_id = self._score_tokens(prefix)
        except BackendError:
            return None
        return None if forced else (safe_id, unsafe_id)

    def _decode(self, requests: list[GenerationRequest], batch: Any, mode: str) -> list[GenerationResult]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        prompt_len = batch["input_ids"].shape[1]
        tok = self.tokenizer
        verdict = mode == "verdict"
        criteria = StoppingCriteriaList()
        if verdict:
            prefixes = [r.prefix for r in requests]

            class _CategoriesLineDone(StoppingCriteria):
                def __call__(self, input_ids, scores, **kwargs):  # type: ignore[no-untyped-def]
                    import torch

                    new = tok.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
                    return torch.tensor(
                        [bool(_CATEGORIES_DONE.search(p + t)) for p, t in zip(prefixes, new)],
                        device=input_ids.device,
                    )

            criteria.append(_CategoriesLineDone())
        max_new = self.verdict_max_new_tokens if verdict else max(r.max_new_tokens for r in requests)
        out = self.model.generate(
            **batch,
            max_new_tokens=max_new,
            min_new_tokens=max_new if self.ignore_eos else None,
            do_sample=False,
            stopping_criteria=criteria,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            use_audio_in_video=False,
        )
        results = []
        for req, seq in zip(requests, out[:, prompt_len:]):
            ids = seq.tolist()
            n_new = len([i for i in ids if i != tok.pad_token_id])
            text = req.prefix + tok.decode(ids, skip_special_tokens=True)
            if verdict:
                text = truncate_to_verdict(text)
            results.append(GenerationResult(text=text, new_tokens=n_new))
        return results

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

    def _score(self, requests: list[GenerationRequest], batch: Any) -> list[GenerationResult]:
        import torch

        prefix = requests[0].prefix
        if any(r.prefix != prefix for r in requests):
            raise BackendError("score requests in one batch must share a prefix")
        forced, safe_id, unsafe_id = self._score_tokens(prefix)
        if forced:
            extra = torch.tensor([forced] * batch["input_ids"].shape[0], device=batch["input_ids"].device)
            batch["input_ids"] = torch.cat([batch["input_ids"], extra], dim=1)
            batch["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(extra)], dim=1)
        try:
            out = self.model(**batch, use_cache=False, logits_to_keep=1)
        except TypeError:  # older signatures
            out = self.model(**batch, use_cache=False)
        logits = out.logits[:, -1, :].float()
        pair = torch.stack([logits[:, safe_id], logits[:, unsafe_id]], dim=-1)
        p_unsafe = torch.softmax(pair, dim=-1)[:, 1].tolist()
        return [
            GenerationResult(text=f"{r.prefix} {'unsafe' if p >= 0.5 else 'safe'}", score=float(p), new_tokens=0)
            for r, p in zip(requests, p_unsafe)
        ]
