"""Media made in the test for door cases: images, audio and video as OpenAI content parts."""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np

from tests.support.media_makers import b64, data_uri, png_bytes, wav_bytes

RED, BLUE = (220, 20, 20), (20, 40, 220)


def mp4_bytes(colour: tuple[int, int, int], frames: int = 4, size: tuple[int, int] = (32, 32)) -> bytes:
    """A short silent MPEG-4 clip of one colour."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=2)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        pixels[:] = colour
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def image_part(colour: tuple[int, int, int] = RED, size: tuple[int, int] = (28, 28)) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_uri(png_bytes(colour, size), "image/png")}}


def audio_part(freq: float = 440.0, seconds: float = 0.5) -> dict[str, Any]:
    """``freq=0`` is silence."""
    return {"type": "input_audio", "input_audio": {"data": b64(wav_bytes(seconds, freq)), "format": "wav"}}


def video_part(colour: tuple[int, int, int] = RED) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": data_uri(mp4_bytes(colour), "video/mp4")}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}
