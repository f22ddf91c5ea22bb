"""Vision and audio tower outputs, cached by the media's content hash.

Why: a guard judges the same media again and again. The output rail of a turn re-reads the
user's image; every later turn of the conversation re-reads all earlier media. The towers'
outputs depend only on the media (and the processor's grid), so each is computed once and the
prompt's placeholder embeddings are filled from the cache, as the model itself would fill them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..._lru import LRU
from ...errors import BackendError
from ...media import DecodedAudio, DecodedImage, DecodedVideo

__all__ = ["KINDS", "MediaFeatureCache", "media_keys"]

#: (kind, placeholder token, processor inputs of that kind)
KINDS = (
    ("image", "<|IMAGE|>", ("pixel_values", "image_grid_thw")),
    ("video", "<|VIDEO|>", ("pixel_values_videos", "video_grid_thw")),
    ("audio", "<|AUDIO|>", ("input_features", "feature_attention_mask")),
)


def media_keys(requests: Sequence[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Each media item's cache key, per kind, in the order the processor batched them: the
    item's identity (``DecodedMedia.key``: kind, source hash, span) and the shape the processor
    saw (one source decoded under other limits gives another grid, so other tower outputs)."""
    keys: dict[str, list[tuple[Any, ...]]] = {"image": [], "video": [], "audio": []}
    for req in requests:
        for m in req.media:
            if isinstance(m, DecodedImage):
                keys["image"].append((*m.key[1:], m.image.size))
            elif isinstance(m, DecodedVideo):
                keys["video"].append((*m.key[1:], m.fps, m.frames.shape))
            elif isinstance(m, DecodedAudio):
                keys["audio"].append((*m.key[1:], m.samples.shape))
    return keys


def _runs(ids: torch.Tensor, token: int) -> list[int]:
    """Lengths of the runs of ``token`` in ``ids``, row by row: one run per media item."""
    where = (ids.reshape(-1) == token).nonzero().flatten()
    if where.numel() == 0:
        return []
    breaks = ((where[1:] != where[:-1] + 1).nonzero().flatten() + 1).tolist()
    edges = [0, *breaks, where.numel()]
    return [b - a for a, b in zip(edges, edges[1:])]


class MediaFeatureCache:
    """Tower outputs on the model's device, least recently used dropped first, bounded in bytes.

    ``hits`` counts items served from the cache; ``misses`` counts tower outputs computed (an
    item repeated within one batch is computed once).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self._lru: LRU[tuple[Any, ...], torch.Tensor] = LRU(max_bytes=max_bytes, sizeof=_nbytes)
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._lru.max_bytes or 0

    @property
    def bytes(self) -> int:
        return self._lru.bytes

    @property
    def hits(self) -> int:
        return self._lru.hits

    def __len__(self) -> int:
        return len(self._lru)

    def clear(self) -> None:
        self._lru.clear()

    def get(self, key: tuple[Any, ...]) -> torch.Tensor | None:
        return self._lru.get(key)

    def put(self, key: tuple[Any, ...], value: torch.Tensor) -> None:
        self.misses += 1
        self._lru.put(key, value)

    def embed(self, model: Any, ids: torch.Tensor, media: dict[str, torch.Tensor],
              keys: dict[str, list[tuple[Any, ...]]], token_ids: dict[str, int],
              to_device: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``ids``' input embeddings with every media placeholder run filled by its tower output
        (cached, or computed now for the items not cached, all of a kind in one tower call).
        ``ids`` and ``media`` are on the CPU: only the inputs of items not cached are moved, by
        ``to_device``. The result is on the model's device."""
        device = next(model.parameters()).device
        ids_on_device = ids.to(device)
        embeds = model.get_input_embeddings()(ids_on_device)
        for kind, _, (data_key, extra_key) in KINDS:
            if not keys[kind]:
                continue
            counts = _runs(ids, token_ids[kind])
            if len(counts) != len(keys[kind]):
                raise BackendError(f"{len(counts)} {kind} placeholders for {len(keys[kind])} {kind} items")
            cached = [self.get((kind, *k)) for k in keys[kind]]
            missing: dict[tuple[Any, ...], int] = {}  # key -> its first item (an item may repeat)
            for i, (k, f) in enumerate(zip(keys[kind], cached)):
                if f is None:
                    missing.setdefault(k, i)
            fresh: dict[tuple[Any, ...], torch.Tensor] = {}
            if missing:
                todo = list(missing.values())
                computed = _tower(model, kind, media[data_key], media[extra_key], todo, [counts[i] for i in todo],
                                  to_device)
                fresh = dict(zip(missing, computed))
                for k, value in fresh.items():
                    self.put((kind, *k), value)
            flat = torch.cat([f if f is not None else fresh[k] for k, f in zip(keys[kind], cached)]).to(embeds.dtype)
            placeholder = (ids_on_device == token_ids[kind]).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(placeholder, flat)
        return embeds


def _nbytes(value: torch.Tensor) -> int:
    return value.numel() * value.element_size()


def _tower(model: Any, kind: str, data: torch.Tensor, extra: torch.Tensor, items: list[int], counts: list[int],
           to_device: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """Run one tower over the chosen items; one output tensor per item (its placeholder count long)."""
    if kind == "audio":
        out = model.get_audio_features(to_device(data[items]), to_device(extra[items]))
        flat = getattr(out, "last_hidden_state", out)
    else:
        patches = extra.prod(dim=-1).tolist()  # extra is the grid (t, h, w) of each item
        starts = [sum(patches[:i]) for i in range(len(patches))]
        pixels = torch.cat([data[starts[i] : starts[i] + patches[i]] for i in items])
        getter = model.get_image_features if kind == "image" else model.get_video_features
        out = getter(to_device(pixels), to_device(extra[items]))
        pooled = getattr(out, "pooler_output", out)
        flat = torch.cat(list(pooled)) if isinstance(pooled, (list, tuple)) else pooled
    if flat.shape[0] != sum(counts):
        raise BackendError(f"the {kind} tower gave {flat.shape[0]} embeddings for {sum(counts)} placeholders")
    return list(torch.split(flat, counts))
