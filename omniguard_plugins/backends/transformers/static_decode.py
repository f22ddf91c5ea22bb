"""Greedy decode steps over a persistent static KV cache, with one CUDA graph per batch size.

Why: a decode step of the 7B thinker reads ~15 GB of weights (~4 ms on an H100/H200), but an
eager transformers step launches hundreds of small kernels and takes ~25 ms at batch 32.
Replaying a captured graph removes the launches; a graph needs fixed addresses, so the KV
buffers, token, position and mask inputs live here for the backend's lifetime and each step
writes into them. ``transformers``' own static cache re-records its graphs on every
``generate`` call and fails at batch 32 inside cudagraph trees (shared/FACTS.md), hence this.

Layout: one buffer per length bucket, ``[max_batch, kv_heads, length, head_dim]`` per layer;
a batch of ``b`` rows uses the first ``b`` rows (rounded up to a power of two, one graph each).
Every row writes its step ``t`` token at the same slot ``width + t``: prompts were already
padded to one width, and the attention mask hides the padding.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..._lru import LRU

__all__ = ["StaticDecoder", "bucket"]

log = logging.getLogger("omniguard")

#: KV lengths are rounded up to a multiple of this (fewer distinct buffers and graphs)
LENGTH_STEP = 512


def bucket(n: int) -> int:
    """The batch size a graph is captured for: the next power of two."""
    return 1 << max(0, (n - 1).bit_length())


class _SlotCache:
    """The ``Cache`` face transformers' attention layers call: ``update`` writes this step's
    key/value at the shared write slot and returns the whole static buffer."""

    is_compileable = True

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], write_at: torch.Tensor) -> None:
        self.keys, self.values, self.write_at = keys, values, write_at

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer_idx].index_copy_(2, self.write_at, key_states)
        self.values[layer_idx].index_copy_(2, self.write_at, value_states)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # positions and the mask are always given explicitly

    def __len__(self) -> int:
        return len(self.keys)


class _LengthBucket:
    """Static buffers for KV lengths up to ``length`` and their captured graphs."""

    def __init__(self, decoder: StaticDecoder, length: int) -> None:
        d = decoder
        shape = (d.max_batch, d.kv_heads, length, d.head_dim)
        self.length = length
        self.keys = [torch.zeros(shape, dtype=d.dtype, device=d.device) for _ in range(d.layers)]
        self.values = [torch.zeros(shape, dtype=d.dtype, device=d.device) for _ in range(d.layers)]
        self.ids = torch.zeros(d.max_batch, 1, dtype=torch.long, device=d.device)
        self.positions = torch.zeros(3, d.max_batch, 1, dtype=torch.long, device=d.device)
        self.mask = torch.zeros(d.max_batch, 1, 1, length, dtype=torch.bool, device=d.device)
        self.write_at = torch.zeros(1, dtype=torch.long, device=d.device)
        self.graphs: dict[int, tuple[Any, torch.Tensor]] = {}

    def views(self, b: int) -> tuple[_SlotCache, dict[str, torch.Tensor]]:
        cache = _SlotCache([k[:b] for k in self.keys], [v[:b] for v in self.values], self.write_at)
        mask = self.mask[:b]
        return cache, {"full_attention": mask, "sliding_attention": mask}


_RESERVED = object()


class StaticDecoder:
    """Owned by a backend; ``decode`` runs greedy steps for rows whose prompt KV is given."""

    def __init__(self, model: Any, *, cache_arg: str, max_batch: int, capture: bool, max_buckets: int = 2) -> None:
        text = model.config.get_text_config()
        self.model = model
        self.cache_arg = cache_arg
        self.max_batch = bucket(max_batch)
        self.layers = text.num_hidden_layers
        self.kv_heads = text.num_key_value_heads
        self.head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.dtype = model.dtype
        self.device = next(model.parameters()).device
        #: capture CUDA graphs (CUDA only); turned off for good if a capture fails
        self.capture = capture and self.device.type == "cuda"
        self.max_buckets = max_buckets
        self._buckets: LRU[int, _LengthBucket | object] = LRU(max_buckets)
        self._pool: Any = None
        #: CUDA graphs captured so far (0 on the CPU, or after a failed capture)
        self.graphs_captured = 0

    def __len__(self) -> int:
        """Length buckets held now."""
        return len(self._buckets)

    def _bucket_for(self, length: int) -> _LengthBucket:
        size = -(-length // LENGTH_STEP) * LENGTH_STEP
        found = self._buckets.get(size)
        if isinstance(found, _LengthBucket):
            return found
        if len(self._buckets) >= self.max_buckets:
            # drop the oldest bucket (its buffers and graphs) before allocating the new one, so
            # the device never holds one more: a placeholder takes the slot first
            self._buckets.put(size, _RESERVED)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        store = _LengthBucket(self, size)
        self._buckets.put(size, store)
        return store

    def load(self, layer_kv: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor, max_new: int) -> _Run:
        """Copy the prompt KV (``[rows, kv_heads, width, head_dim]`` per layer) into the buffers."""
        rows, width = mask.shape
        store = self._bucket_for(width + max_new)
        for (k, v), bk, bv in zip(layer_kv, store.keys, store.values):
            bk[:rows, :, :width].copy_(k)
            bv[:rows, :, :width].copy_(v)
        store.mask.zero_()
        store.mask[:rows, 0, 0, :width] = mask.bool()
        store.mask[rows:, 0, 0, 0] = True  # padding rows attend to something (no NaN)
        return _Run(self, store, rows, width)

    def step_fn(self, store: _LengthBucket, b: int) -> torch.Tensor:
        cache, masks = store.views(b)
        out = self.model(
            input_ids=store.ids[:b], attention_mask=masks, position_ids=store.positions[:, :b],
            use_cache=True, logits_to_keep=1, **{self.cache_arg: cache},
        )
        return out.logits[:, -1, :].argmax(dim=-1)

    def run_step(self, store: _LengthBucket, b: int) -> torch.Tensor:
        if not self.capture:
            return self.step_fn(store, b)
        graph = store.graphs.get(b)
        if graph is None:
            try:
                graph = store.graphs[b] = self._capture(store, b)
                self.graphs_captured += 1
            except Exception as exc:  # noqa: BLE001 - fall back to eager steps, never fail the batch
                log.warning("CUDA graph capture failed at batch %d (%s); decoding eagerly", b, exc)
                self.capture = False
                return self.step_fn(store, b)
        graph[0].replay()
        return graph[1]

    def _capture(self, store: _LengthBucket, b: int) -> tuple[Any, torch.Tensor]:
        # warm up on a side stream (the step is idempotent: it rewrites the same slot)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.step_fn(store, b)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: callers' threads may touch CUDA while the worker captures
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            out = self.step_fn(store, b)
        return graph, out


class _Run:
    """One batch's decode over a length bucket: rows occupy slots ``0..rows-1``."""

    def __init__(self, decoder: StaticDecoder, store: _LengthBucket, rows: int, width: int) -> None:
        self.decoder, self.store, self.rows, self.width, self.t = decoder, store, rows, width, 0

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (at ``positions``); the greedy next token of each row."""
        s = self.store
        slot = self.width + self.t
        b = bucket(self.rows)
        s.ids[: self.rows, 0].copy_(tokens)
        s.positions[:, : self.rows, 0].copy_(positions.view(1, -1).expand(3, -1))
        s.mask[:b, 0, 0, slot] = True
        s.write_at.fill_(slot)
        self.t += 1
        return self.decoder.run_step(s, b)[: self.rows]

    def should_shrink(self, live: int, slots: int) -> bool:
        return bucket(live) < bucket(slots)

    def keep(self, slots: list[int]) -> None:
        """Move the rows still decoding to the front, so a smaller graph serves them."""
        s = self.store
        index = torch.tensor(slots, device=s.ids.device)
        end = self.width + self.t
        for k, v in zip(s.keys, s.values):
            k[: len(slots), :, :end] = k[index, :, :end]
            v[: len(slots), :, :end] = v[index, :, :end]
        s.mask[: len(slots)] = s.mask[index]
        s.mask[len(slots) :] = False
        s.mask[len(slots) :, 0, 0, 0] = True
        self.rows = len(slots)
