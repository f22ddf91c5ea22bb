"""The label decisions made from a prefill's last logits: score mode and label-first verdicts.

The answer is forced to start with the label prefix (``answer_format.LABEL_PREFIX``), so the next
token is the first token of " safe" or " unsafe". ``score``: P(unsafe) is the softmax over those
two tokens. ``verdict`` (label first): greedy decoding picks the arg-max token, so a row whose
arg-max is the first token of " safe" is exactly what greedy generation would label safe, and
only the other rows decode on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import BackendError
from ..base import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    import torch

__all__ = ["label_first", "label_tokens", "pair_probability", "score_results", "score_tokens"]

#: decodes ``rows`` of the batch on from the prefill, given each row's first new token
Decode = Callable[[Sequence[int], Sequence[int]], list[GenerationResult]]


def score_tokens(tokenizer: Any, prefix: str) -> tuple[list[int], int, int]:
    """The ids forced after the prefix, then the first ids where ' safe' and ' unsafe' differ."""
    safe = tokenizer(prefix + " safe", add_special_tokens=False)["input_ids"]
    unsafe = tokenizer(prefix + " unsafe", add_special_tokens=False)["input_ids"]
    base = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    common = 0
    while common < min(len(safe), len(unsafe)) and safe[common] == unsafe[common]:
        common += 1
    if common >= min(len(safe), len(unsafe)):
        raise BackendError("cannot tell ' safe' from ' unsafe' with this tokenizer")
    forced = safe[len(base):common] if safe[: len(base)] == base else []
    return forced, safe[common], unsafe[common]


def label_tokens(tokenizer: Any, prefix: str) -> tuple[int, int] | None:
    """(first token of " safe", of " unsafe") right after ``prefix``, or None when the
    tokenizer shares tokens between them (then the generic path runs)."""
    try:
        forced, safe_id, unsafe_id = score_tokens(tokenizer, prefix)
    except BackendError:
        return None
    return None if forced else (safe_id, unsafe_id)


def pair_probability(logits: torch.Tensor, safe_id: int, unsafe_id: int) -> list[float]:
    """P(unsafe) from the two label tokens' logits only."""
    import torch

    pair = torch.stack([logits[:, safe_id], logits[:, unsafe_id]], dim=-1)
    return torch.softmax(pair, dim=-1)[:, 1].tolist()


def score_results(requests: Sequence[GenerationRequest], logits: torch.Tensor, safe_id: int,
                  unsafe_id: int) -> list[GenerationResult]:
    p_unsafe = pair_probability(logits, safe_id, unsafe_id)
    return [GenerationResult(text=f"{r.prefix} {'unsafe' if p >= 0.5 else 'safe'}", score=p, new_tokens=0)
            for r, p in zip(requests, p_unsafe)]


def label_first(requests: Sequence[GenerationRequest], logits: torch.Tensor, safe_id: int, unsafe_id: int, *,
                from_pair: bool, decode: Decode) -> list[GenerationResult]:
    """Safe rows end at their label; the others go on through ``decode`` (their Categories line)."""
    p_unsafe = pair_probability(logits, safe_id, unsafe_id)
    top = logits.argmax(dim=-1).tolist()
    results: list[GenerationResult | None] = [None] * len(requests)
    go_on: list[int] = []
    first: list[int] = []
    for i, (req, best, p) in enumerate(zip(requests, top, p_unsafe)):
        is_safe = p < 0.5 if from_pair else best == safe_id
        if is_safe:
            results[i] = GenerationResult(text=f"{req.prefix} safe", score=p, new_tokens=1)
        else:
            go_on.append(i)
            first.append(unsafe_id if from_pair else best)
    if go_on:
        for i, res in zip(go_on, decode(go_on, first)):
            results[i] = replace(res, score=p_unsafe[i])
    return results  # type: ignore[return-value]
