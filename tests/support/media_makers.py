"""Media made in the test, shared by every folder: PNGs (bytes or a file), a 16-bit WAV tone, data URIs,
and the scripted judge most door tests use (text about a bomb is S9, a mostly red image is S1).

WAVs go through ``omniguard_plugins.media.wav_bytes`` (the product's one 16-bit PCM writer);
``media_factory.wav_bytes`` keeps its own writer on purpose, for odd sample widths."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from omniguard_plugins.media import wav_bytes as pcm_wav
from omniguard_plugins.testing import keyword_handler

RED, BLUE = (220, 20, 20), (20, 40, 200)

#: text with "bomb" is unsafe (S9); a mostly red image is unsafe (S1), whatever the text says
red_is_unsafe = keyword_handler({"bomb": "S9"}, critique="It explains how to build a weapon.", red_images=True,
                                image_critique="A violent image.")


def png_bytes(colour: tuple[int, int, int] = RED, size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def png_file(path: Path, colour: tuple[int, int, int] = RED, size: tuple[int, int] = (32, 32)) -> Path:
    """``path`` holding a one-colour PNG (for doors that take image paths)."""
    path.write_bytes(png_bytes(colour, size))
    return path


def wav_bytes(seconds: float = 1.0, freq: float = 440.0, rate: int = 16_000) -> bytes:
    """A 16-bit mono sine tone at 0.3 of full scale."""
    t = np.arange(int(seconds * rate)) / rate
    return pcm_wav((0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2"), rate)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + b64(data)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
