"""Raw PCM in, judge-ready audio out: what a live session does to the microphone's bytes.

Frameworks hand over 16-bit PCM with no container, in chunks of any size, at whatever rate and
channel count the transport negotiated (and may renegotiate). :class:`PcmStream` turns that into
16 kHz mono float32 once, as it arrives: a sample split across two chunks is carried over, channels
are averaged, the rate is converted by a streaming linear resampler that keeps its phase across
chunks. :class:`Ring` keeps the last N seconds of it, so memory is bounded however long a turn runs.
What the judge is handed is a WAV of those samples from the core's one writer, ``media.wav_bytes``.
"""

from __future__ import annotations

import numpy as np

from .errors import LiveInputError

__all__ = ["TARGET_RATE", "PcmStream", "Ring"]

#: the rate the judge's audio encoder reads (Whisper features)
TARGET_RATE = 16_000
_MIN_RATE, _MAX_RATE = 4_000, 384_000
_MAX_CHANNELS = 32


class _Resampler:
    """Linear interpolation from ``src`` to ``dst`` Hz, continuous across chunks."""

    def __init__(self, src: int, dst: int) -> None:
        self.step = src / dst
        self.pos = 0.0  # where the next output sample falls, in input samples from the buffer start
        self.prev: np.ndarray | None = None  # the last input sample of the previous chunk

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.step == 1.0:
            return x
        buf = x if self.prev is None else np.concatenate([self.prev, x])
        last = len(buf) - 1
        if last < 1:
            self.prev = buf[-1:] if len(buf) else self.prev
            return np.zeros(0, dtype=np.float32)
        positions = np.arange(self.pos, last, self.step)
        out = np.interp(positions, np.arange(len(buf)), buf).astype(np.float32)
        following = positions[-1] + self.step if len(positions) else self.pos
        self.pos = following - last  # the next buffer starts at this buffer's last sample
        self.prev = buf[-1:]
        return out


class PcmStream:
    """16-bit PCM chunks -> 16 kHz mono float32. A change of rate or channel count starts a new
    conversion (the partial sample carried over from the old format is dropped and counted)."""

    def __init__(self) -> None:
        self.format: tuple[int, int] | None = None
        self._carry = b""
        self._resample: _Resampler | None = None
        #: times the rate or channel count changed mid-stream
        self.format_changes = 0
        #: bytes dropped: a partial sample left when the format changed
        self.dropped_bytes = 0

    def push(self, pcm: bytes, sample_rate: int, channels: int) -> np.ndarray:
        """Convert one chunk; returns the new 16 kHz mono samples (maybe none). Raises
        :class:`LiveInputError` for a rate or channel count no microphone has."""
        if not isinstance(pcm, (bytes, bytearray, memoryview)):
            raise LiveInputError(f"PCM audio must be bytes, got {type(pcm).__name__}")
        if not isinstance(sample_rate, int) or not _MIN_RATE <= sample_rate <= _MAX_RATE:
            raise LiveInputError(f"sample_rate must be an int from {_MIN_RATE} to {_MAX_RATE} Hz, got {sample_rate!r}")
        if not isinstance(channels, int) or not 1 <= channels <= _MAX_CHANNELS:
            raise LiveInputError(f"channels must be an int between 1 and {_MAX_CHANNELS}, got {channels!r}")
        if self.format != (sample_rate, channels):
            if self.format is not None:
                self.format_changes += 1
                self.dropped_bytes += len(self._carry)
            self.format, self._carry = (sample_rate, channels), b""
            self._resample = _Resampler(sample_rate, TARGET_RATE)
        data = self._carry + bytes(pcm)
        frame = 2 * channels
        usable = len(data) - len(data) % frame
        self._carry = data[usable:]
        if not usable:
            return np.zeros(0, dtype=np.float32)
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1)
        assert self._resample is not None
        return self._resample(samples)


class Ring:
    """The last ``capacity`` samples, with the count of every sample ever written (so a sample's
    position in the session is known after older ones were dropped)."""

    def __init__(self, capacity: int) -> None:
        self._buf = np.zeros(max(1, capacity), dtype=np.float32)
        self.written = 0  # samples written since the ring was made or cleared
        self.base = 0  # session sample index of written == 0

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def held(self) -> int:
        return min(self.written, self.capacity)

    @property
    def end(self) -> int:
        """Session sample index just after the newest sample."""
        return self.base + self.written

    @property
    def start(self) -> int:
        """Session sample index of the oldest sample still held."""
        return self.end - self.held

    def clear(self, base: int) -> None:
        self.written, self.base = 0, base

    def write(self, x: np.ndarray) -> None:
        cap = self.capacity
        if len(x) >= cap:
            self.written += len(x)
            # sample number w always sits at index w % capacity
            self._buf[:] = np.roll(x[-cap:], (self.written - cap) % cap)
            return
        at = self.written % cap
        first = min(len(x), cap - at)
        self._buf[at : at + first] = x[:first]
        self._buf[: len(x) - first] = x[first:]
        self.written += len(x)

    def span(self, start: int, end: int) -> np.ndarray:
        """A copy of session samples ``[start, end)``, clipped to what is held."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        cap = self.capacity
        i, j = (start - self.base) % cap, (end - self.base) % cap
        if i < j:
            return self._buf[i:j].copy()
        return np.concatenate([self._buf[i:], self._buf[:j]])

