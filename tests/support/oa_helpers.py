"""Media for the Agents SDK tests, as the SDK carries them (data: URLs, base64 files)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from omniguard_plugins.media.pcm import wav_bytes

__all__ = ["png_data_url", "wav_base64"]


def png_data_url(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def wav_base64() -> str:
    tone = (0.2 * np.sin(np.linspace(0, 2 * np.pi * 440, 16000))).astype(np.float32)
    return base64.b64encode(wav_bytes(tone, 16000)).decode()
