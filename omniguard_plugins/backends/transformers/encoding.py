"""Encoding: one request through the processor (tokens, image patches, audio features), then a
batch collated from such rows.

One request per processor call keeps the tokenizer's padding state untouched, so callers'
threads may encode at once (``prepare``); collating gives what one processor call over the
whole batch would have given (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import BackendError, TextTooLarge
from ...media import DecodedAudio, DecodedImage, DecodedVideo
from ..base import GenerationRequest

__all__ = ["chat_text", "collate", "encode_one", "media_inputs"]

#: tokens a verdict needs after its prompt (label and Categories lines)
_VERDICT_ROOM = 16


def chat_text(processor: Any, req: GenerationRequest) -> str:
    """The chat-templated prompt: the text, then one placeholder per media item."""
    content: list[dict[str, Any]] = [{"type": "text", "text": req.prompt}]
    content += [{"type": m.kind} for m in req.media]  # "image", "audio", "video"
    turn = [{"role": "user", "content": content}]
    return processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)


def media_inputs(images: list[Any], audios: list[Any], videos: list[Any]) -> dict[str, Any]:
    """The processor's media arguments, each only when there is some (it rejects empty lists)."""
    named = {"images": images, "audio": audios, "videos": videos}
    return {key: value for key, value in named.items() if value}


def encode_one(processor: Any, req: GenerationRequest, *, context_tokens: int | None = None) -> dict[str, Any]:
    """The processor's output for one request (answer prefix included), unpadded. A prompt that
    leaves no room in the model's ``context_tokens`` for its answer is refused here, typed and
    before any forward pass (the judge's character cap catches most such text earlier)."""
    images = [m.image for m in req.media if isinstance(m, DecodedImage)]
    audios = [m.samples for m in req.media if isinstance(m, DecodedAudio)]
    videos = [m.frames for m in req.media if isinstance(m, DecodedVideo)]
    fps = [m.fps for m in req.media if isinstance(m, DecodedVideo)]
    if len(images) + len(audios) + len(videos) != len(req.media):  # pragma: no cover
        raise BackendError(f"unknown media {[type(m).__name__ for m in req.media]}")
    kwargs: dict[str, Any] = {"text": [chat_text(processor, req) + req.prefix], "return_tensors": "pt",
                              **media_inputs(images, audios, videos)}
    if videos:
        kwargs["videos_kwargs"] = {"fps": fps[0]}
    try:
        row = dict(processor(**kwargs))
    except (ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise BackendError(f"the processor rejected the request: {str(exc).splitlines()[0][:200]}") from exc
    if videos and "video_second_per_grid" in row:
        # the processor takes one fps per call; each video keeps its own sampling rate
        import torch

        step = processor.video_processor.temporal_patch_size
        row["video_second_per_grid"] = torch.tensor([step / f for f in fps], dtype=torch.float32)
    if context_tokens:
        answer = req.max_new_tokens if req.mode == "critique" or req.explain_unsafe else _VERDICT_ROOM
        tokens = int(row["input_ids"].shape[1])
        if tokens + answer > context_tokens:
            raise TextTooLarge(f"the prompt is {tokens} tokens; with room for its answer that is over the model's "
                               f"{context_tokens}-token context: send less text or media")
    return row


def collate(rows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """One batch from per-request processor outputs: token rows left-padded, media tensors
    (patches, grids, audio features) concatenated in request order."""
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
