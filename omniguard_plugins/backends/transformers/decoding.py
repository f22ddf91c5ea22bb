"""Greedy decoding from a prefill's KV, our own loop rather than ``generate``.

Rows leave the batch as they finish (EOS, a complete Categories line in verdict mode, or the
token cap), and the batch shrinks with them. Steps run either over the prefill's own
DynamicCache (any batch size) or, with ``decode_graphs``, over persistent static buffers with a
captured CUDA graph per batch size (:mod:`.static_decode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...answer_format import truncate_to_verdict, verdict_complete
from ..base import GenerationRequest, GenerationResult
from .thinker import Thinker, layer_kv

if TYPE_CHECKING:
    import torch

    from .prefill import Prefill
    from .static_decode import StaticDecoder

__all__ = ["Decoder"]


class Decoder:
    """Owns the static decode buffers (built on first use) for one thinker."""

    def __init__(self, thinker: Thinker) -> None:
        self.thinker = thinker
        #: the static-buffer decoder, once ``decode_graphs`` has been used
        self.static: StaticDecoder | None = None

    def clear(self) -> None:
        self.static = None

    def decode(self, requests: Sequence[GenerationRequest], state: Prefill, rows: Sequence[int],
               first: Sequence[int], *, verdict: bool, max_new: int, ignore_eos: bool = False, graphs: bool = False,
               graphs_max_batch: int = 32) -> list[GenerationResult]:
        """Decode ``rows`` of the batch, ``first`` being each row's first new token. ``verdict``:
        stop at a complete Categories line and cut the answer there."""
        import torch

        rows = list(rows)
        reqs = [requests[i] for i in rows]
        generated: list[list[int]] = [[t] for t in first]

        def finished(req: GenerationRequest, ids: list[int]) -> bool:
            if len(ids) >= max_new:
                return True
            if ids[-1] == self.thinker.eos_id and not ignore_eos:
                return True
            if verdict and ids[-1] in self.thinker.newline_ids:
                return verdict_complete(req.prefix + self.thinker.tokenizer.decode(ids, skip_special_tokens=True))
            return False

        live = [not finished(r, g) for r, g in zip(reqs, generated)]
        if any(live):
            device = self.thinker.device
            index = torch.tensor(rows, device=device)
            position = state.next_position[index]
            select = len(rows) != len(requests)
            if graphs and len(index) <= graphs_max_batch:
                run: Any = self._static_run(state, index, select, max_new, graphs_max_batch)
            else:
                if select:
                    state.cache.batch_select_indices(index)
                mask = state.attention_mask[index] if select else state.attention_mask
                run = _DynamicRun(self.thinker, state.cache, mask)
            slots = list(range(len(reqs)))  # batch slot -> index into reqs
            current = torch.tensor(list(first), device=device)
            while any(live[r] for r in slots):
                keep_slots = [s for s, r in enumerate(slots) if live[r]]
                if run.should_shrink(len(keep_slots), len(slots)):
                    run.keep(keep_slots)
                    keep = torch.tensor(keep_slots, device=device)
                    position, current = position[keep], current[keep]
                    slots = [slots[s] for s in keep_slots]
                current = run.step(current, position)
                position = position + 1
                for slot, token in enumerate(current.tolist()):
                    r = slots[slot]
                    if live[r]:
                        generated[r].append(token)
                        live[r] = not finished(reqs[r], generated[r])
        results = []
        for req, ids in zip(reqs, generated):
            text = req.prefix + self.thinker.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(GenerationResult(text=truncate_to_verdict(text) if verdict else text, new_tokens=len(ids)))
        return results

    def _static_run(self, state: Prefill, index: torch.Tensor, select: bool, max_new: int, max_batch: int) -> Any:
        if self.static is None or self.static.max_batch < len(index):
            from .static_decode import StaticDecoder

            self.static = StaticDecoder(self.thinker.model, cache_arg=self.thinker.cache_arg, max_batch=max_batch,
                                        capture=True)
        mask = state.attention_mask[index] if select else state.attention_mask
        kv = [(k[index], v[index]) if select else (k, v) for k, v in layer_kv(state.cache)]
        return self.static.load(kv, mask, max_new)


class _DynamicRun:
    """Decode steps that grow the prefill's DynamicCache (no graphs; any batch size)."""

    def __init__(self, thinker: Thinker, cache: Any, mask: torch.Tensor) -> None:
        self.thinker, self.cache, self.mask = thinker, cache, mask

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
        rope = positions.view(1, -1, 1).expand(3, -1, -1)
        out = self.thinker.forward(tokens[:, None], self.mask, rope, self.cache, {})
        return out.logits[:, -1, :].argmax(dim=-1)
