"""Forward plumbing: the loaded thinker and what every stage derives from it once (special token
ids, the name of the cache argument, 3-D rope positions, device moves).

The thinker's forward ignores ``logits_to_keep`` and projects every position onto the 152k
vocabulary ([32, 570, 152064] bf16 is 5.5 GB); only the last position is ever read, so a hook
on ``lm_head`` keeps that one during our own forwards (other callers still get every position).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["Thinker", "layer_kv", "output_cache"]


class Thinker:
    """One loaded Qwen2.5-Omni thinker with its processor; shared by a backend's variants."""

    def __init__(self, model: Any, processor: Any, device: str) -> None:
        from .media_features import KINDS

        self.model: Any = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.eos_id: int = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        #: placeholder token of each media kind ("image", "video", "audio")
        self.media_token_ids = {kind: self.tokenizer.convert_tokens_to_ids(token) for kind, token, _ in KINDS}
        # tokens that can end a line: only after one can a verdict's Categories line be complete
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self.newline_ids = frozenset(i for i, t in enumerate(vocab) if t and ("\n" in t or "\u010a" in t))
        self._last_logits_only = False
        model.lm_head.register_forward_pre_hook(self._keep_last_position)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def forward(self, ids: Any, mask: Any, positions: Any, cache: Any, media: dict[str, Any], *, use_cache: bool = True,
                embeds: Any = None) -> Any:
        """One thinker forward; ``logits`` holds the last position only."""
        kwargs: dict[str, Any] = {self.cache_arg: cache} if cache is not None else {}
        if embeds is not None:
            kwargs["inputs_embeds"] = embeds
        else:
            kwargs["input_ids"] = self.to_device(ids)
        self._last_logits_only = True
        try:
            return self.model(
                attention_mask=self.to_device(mask), position_ids=self.to_device(positions), use_cache=use_cache,
                logits_to_keep=1, use_audio_in_video=False, **kwargs, **media,
            )
        finally:
            self._last_logits_only = False

    def _keep_last_position(self, module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._last_logits_only and args and args[0].dim() == 3:
            return (args[0][:, -1:, :], *args[1:])
        return None

    def positions(self, ids: Any, mask: Any, batch: dict[str, Any]) -> Any:
        """Qwen2.5-Omni's 3-D (time, height, width) rope positions, computed on the CPU before the
        batch moves (the model's own routine loops over rows in Python)."""
        features = batch.get("feature_attention_mask")
        positions, _ = self.model.get_rope_index(
            ids, batch.get("image_grid_thw"), batch.get("video_grid_thw"), mask, False,
            features.sum(dim=-1) if features is not None else None, batch.get("video_second_per_grid"),
        )
        return positions

    def to_device(self, value: Any) -> Any:
        import torch

        if not isinstance(value, torch.Tensor):
            return value
        value = value.to(self.device, non_blocking=True)
        return value.to(self.model.dtype) if torch.is_floating_point(value) else value


def output_cache(out: Any) -> Any:
    """The KV cache of a forward output (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def layer_kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a DynamicCache, across transformers versions."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache))
