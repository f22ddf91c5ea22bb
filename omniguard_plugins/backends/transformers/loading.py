"""Loading: only the *thinker* of a full OmniGuard checkpoint, on the chosen device and dtype.

The talker and token2wav would only cost memory (the guard answers in text). A hub id with no
reachable hub looks in the local cache only, rather than retrying for minutes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["hub_reachable", "load_thinker", "resolve_device", "resolve_dtype"]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                "fp32": torch.float32, "float32": torch.float32}[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32") from None


def hub_reachable(timeout_s: float = 3.0) -> bool:
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


def load_thinker(model: str | os.PathLike[str], *, device: str = "auto",
                 dtype: str = "auto") -> tuple[Any, Any, str, str]:
    """(thinker in eval mode on its device, processor padding left, model id, resolved device)."""
    try:
        import torch  # noqa: F401 - fail here, with the install hint, not deep inside transformers
        from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerForConditionalGeneration
    except ImportError as exc:
        raise ModelLoadError(
            f"the transformers backend needs torch and transformers ({exc.name} is missing); "
            "install omniguard-plugins[transformers]"
        ) from None
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    name = str(model)
    local_only = Path(name).exists() or not hub_reachable()
    try:
        processor = Qwen2_5OmniProcessor.from_pretrained(name, local_files_only=local_only)
        thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            name, dtype=torch_dtype, attn_implementation="sdpa", local_files_only=local_only
        )
    except (OSError, ValueError, EnvironmentError) as exc:
        local = Path(name).exists()
        hint = ("is not a loadable checkpoint folder" if local
                else "could not be fetched (no local folder, hub unreachable?)")
        raise ModelLoadError(
            f"OmniGuard model {name!r} {hint}: set OMNIGUARD_MODEL to a local OmniGuard checkpoint folder, "
            f"or OMNIGUARD_URL to a running `omniguard serve` / vLLM endpoint"
        ) from exc
    thinker.to(device)  # type: ignore[arg-type]  # transformers' stubs type .to() for a model, not a device
    thinker.eval()
    processor.tokenizer.padding_side = "left"
    return thinker, processor, name, device
