"""Prefill: one forward pass over a batch's prompts, starting from the cached KV of the policy
text they share.

The ~450 tokens of policy text every prompt starts with are prefilled once per policy and their
KV copied into each batch laid out as ``[policy | left-padded rest]``: a batch computes only the
conversation, the media and the answer prefix. Media placeholders are filled from cached tower
outputs when ``media_cache`` is on (:mod:`.media_features`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._lru import LRU
from ..base import GenerationRequest
from .encoding import chat_text
from .thinker import Thinker, output_cache

if TYPE_CHECKING:
    import torch

    from .media_features import MediaFeatureCache

__all__ = ["Prefill", "PrefixKV", "prefill"]


@dataclass
class Prefill:
    #: each row's prompt length in tokens (forced answer tokens included)
    prompt_tokens: list[int]
    #: tokens each row actually computed (its prompt less a reused prefix)
    computed_tokens: list[int]
    #: [batch, vocab] float logits of each row's last prompt position
    logits: torch.Tensor
    #: the KV of the whole prompt (None when the caller needs no decoding)
    cache: Any
    #: [batch, prompt width] on the device; decode steps append to it
    attention_mask: torch.Tensor
    #: [batch] rope position of each row's next token
    next_position: torch.Tensor


class PrefixKV:
    """KV of shared prompt prefixes (the policy text), computed once each and copied into every
    batch that starts with them. Few entries: one per (policy, template) in use.

    ``hits`` counts batches that reused a prefix; ``misses`` those that computed one or found a
    row not starting with it.
    """

    def __init__(self, capacity: int = 8) -> None:
        self._kv: LRU[tuple[int, ...], Any] = LRU(capacity)
        #: shared prompt text -> token ids of the chat-templated text up to its end (() when the
        #: prompt is not found in the templated text); many one-off policies stay bounded
        self._ids: LRU[str, tuple[int, ...]] = LRU(4 * capacity)
        self._mismatches = 0

    @property
    def hits(self) -> int:
        return self._kv.hits

    @property
    def misses(self) -> int:
        return self._kv.misses + self._mismatches

    def __len__(self) -> int:
        return len(self._kv)

    def clear(self) -> None:
        self._kv.clear()
        self._ids.clear()

    def lookup(self, thinker: Thinker, requests: Sequence[GenerationRequest], ids: torch.Tensor,
               lengths: torch.Tensor) -> tuple[tuple[int, ...], Any] | None:
        """The token ids and KV of the batch's shared policy prefix (computed now if new), or None
        when there is none or a row does not start with exactly those tokens."""
        req = requests[0]
        if req.shared_prefix_chars <= 0:
            return None
        prefix_ids = self._token_ids(thinker, req)
        if not prefix_ids or int(lengths.min()) <= len(prefix_ids):
            return None
        width = ids.shape[1]
        expected = ids.new_tensor(prefix_ids)
        for row, length in enumerate(lengths.tolist()):
            start = width - length  # rows are left-padded
            if not bool((ids[row, start : start + len(prefix_ids)] == expected).all()):
                self._mismatches += 1
                return None
        kv = self._kv.get(prefix_ids)
        if kv is None:
            import torch

            positions = torch.arange(len(prefix_ids)).view(1, 1, -1).expand(3, 1, -1)
            out = thinker.forward(expected[None], torch.ones(1, len(prefix_ids), dtype=torch.long), positions, None, {})
            kv = output_cache(out)
            self._kv.put(prefix_ids, kv)
        return prefix_ids, kv

    def _token_ids(self, thinker: Thinker, req: GenerationRequest) -> tuple[int, ...]:
        """Token ids of the chat-templated text up to the end of the request's shared prefix
        (the media placeholders come after the text, so they never change it)."""
        shared = req.prompt[: req.shared_prefix_chars]
        found = self._ids.get(shared)
        if found is not None:
            return found
        chat = chat_text(thinker.processor, req)
        at = chat.find(req.prompt)
        ids = tuple(thinker.tokenizer(chat[: at + req.shared_prefix_chars])["input_ids"]) if at >= 0 else ()
        self._ids.put(shared, ids)
        return ids


def prefill(thinker: Thinker, requests: Sequence[GenerationRequest], batch: dict[str, Any], *,
            forced: Sequence[int] = (), keep_cache: bool = True, prefix_kv: PrefixKV | None = None,
            features: MediaFeatureCache | None = None) -> Prefill:
    """One forward pass over the collated ``batch`` (plus ``forced`` answer tokens), from the
    cached KV of the shared policy prefix when ``prefix_kv`` is given and has it."""
    import torch

    batch = dict(batch)
    ids: torch.Tensor = batch.pop("input_ids")
    mask: torch.Tensor = batch.pop("attention_mask")
    if forced:
        extra = torch.tensor([list(forced)] * ids.shape[0], dtype=ids.dtype)
        ids, mask = torch.cat([ids, extra], dim=1), torch.cat([mask, torch.ones_like(extra)], dim=1)
    lengths = mask.sum(dim=1)
    media = batch  # on the CPU: moved to the device only where the model reads it
    keys = None
    if features is not None:
        from .media_features import media_keys

        keys = media_keys(requests)
    shared = prefix_kv.lookup(thinker, requests, ids, lengths) if prefix_kv is not None else None
    if shared is not None:
        prefix_ids, prefix_cache = shared
        # [prefix | left-padded rest]: the prefix's KV is reused, only the rest is computed
        width = int((lengths - len(prefix_ids)).max())
        rest_mask = torch.arange(width) >= (width - (lengths - len(prefix_ids)))[:, None]
        rest = torch.where(rest_mask, ids[:, -width:], thinker.tokenizer.pad_token_id)
        ids = torch.cat([torch.tensor(prefix_ids, dtype=ids.dtype).expand(len(requests), -1), rest], dim=1)
        prefix_mask = torch.ones(len(requests), len(prefix_ids), dtype=mask.dtype)
        mask = torch.cat([prefix_mask, rest_mask.to(mask.dtype)], dim=1)
        positions = thinker.positions(ids, mask, batch)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(requests))
        computed = (lengths - len(prefix_ids)).tolist()
        out = _forward_with_media(thinker, rest, mask, positions[:, :, len(prefix_ids):], cache, media, keys, features)
    else:
        positions = thinker.positions(ids, mask, batch)
        computed = lengths.tolist()
        out = _forward_with_media(thinker, ids, mask, positions, None, media, keys, features, use_cache=keep_cache)
    next_position = positions[:, :, -1].max(dim=0).values + 1
    return Prefill(
        prompt_tokens=lengths.tolist(),
        computed_tokens=computed,
        logits=out.logits[:, -1, :].float(),
        cache=output_cache(out) if keep_cache else None,
        attention_mask=mask.to(thinker.device),
        next_position=next_position.to(thinker.device),
    )


def _forward_with_media(thinker: Thinker, ids: Any, mask: Any, positions: Any, cache: Any, media: dict[str, Any],
                        keys: dict[str, list[Any]] | None, features: MediaFeatureCache | None, *,
                        use_cache: bool = True) -> Any:
    """A prefill forward whose media placeholders are filled from the tower-output cache
    (``features`` given and media present), or by the model from the raw media."""
    if features is None or keys is None or not any(keys.values()):
        moved = {k: thinker.to_device(v) for k, v in media.items()}
        return thinker.forward(ids, mask, positions, cache, moved, use_cache=use_cache)
    # only the media not cached yet are moved to the device (for their tower)
    embeds = features.embed(thinker.model, ids, media, keys, thinker.media_token_ids, thinker.to_device)
    return thinker.forward(None, mask, positions, cache, {}, use_cache=use_cache, embeds=embeds)
