"""The one WAV writer: PCM samples into a WAV container the decoders read like any upload.

Used wherever the package holds raw samples and must hand them on as a file: an OpenAI-compatible
backend sending decoded audio, :meth:`~omniguard_plugins.content.Audio.from_pcm` wrapping a live
transport's 16-bit PCM (kept at its own rate; the decoder resamples it once, to the judge's rate).
"""

from __future__ import annotations

import io
import wave
from typing import TYPE_CHECKING, Union

from ..errors import ContentError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["wav_bytes"]

#: rates a WAV header may carry here (telephony to studio)
_MIN_RATE, _MAX_RATE = 4_000, 384_000

Samples = Union["np.ndarray", bytes, bytearray, memoryview]


def wav_bytes(samples: Samples, rate: int, channels: int = 1) -> bytes:
    """A 16-bit WAV file of ``samples`` at ``rate`` Hz.

    ``samples`` is float audio in [-1, 1] (clipped), int16 audio, or raw little-endian 16-bit
    PCM bytes; with ``channels`` > 1 interleaved (raw bytes, a flat array) or shaped
    ``(frames, channels)``. Raises ContentError for a rate, channel count or byte length that
    cannot be PCM, so a bad transport setting is refused with its reason, never decoded as noise.
    """
    import numpy as np

    if not isinstance(rate, int) or not _MIN_RATE <= rate <= _MAX_RATE:
        raise ContentError(f"sample rate must be an int from {_MIN_RATE} to {_MAX_RATE} Hz, got {rate!r}")
    if not isinstance(channels, int) or not 1 <= channels <= 32:
        raise ContentError(f"channels must be an int from 1 to 32, got {channels!r}")
    if isinstance(samples, (bytes, bytearray, memoryview)):
        pcm = bytes(samples)
        if len(pcm) % (2 * channels):
            raise ContentError(f"{len(pcm)} bytes is not whole 16-bit frames of {channels} channel(s)")
    else:
        arr = np.asarray(samples)
        if arr.dtype == np.int16:
            ints = arr
        elif arr.dtype.kind == "f":
            ints = (np.clip(arr.astype(np.float32), -1.0, 1.0) * 32767.0).round().astype(np.int16)
        else:
            raise ContentError(f"samples must be float in [-1, 1] or int16, got {arr.dtype}")
        if ints.size % channels:
            raise ContentError(f"{ints.size} samples is not whole frames of {channels} channels")
        pcm = ints.astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()
