"""Real media made on the spot: numpy waveforms, PIL images, and the imageio-ffmpeg binary.

(A uniquely named module, not conftest.py, so tests import its helpers without clashing with
the other test folders' conftest modules; conftest.py re-exports the fixtures.)
"""

from __future__ import annotations

import io
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image as PILImage

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

#: container/codec arguments for each audio format the issue lists
AUDIO_FORMATS = {
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libopus", "-b:a", "32k"],
    "flac": ["-c:a", "flac"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
}


def tone(seconds: float, rate: int = 44_100, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = 44_100, width: int = 2, channels: int = 1) -> bytes:
    """PCM WAV of the given sample width (1 = unsigned 8-bit, 2, 3, 4 = signed)."""
    data = np.repeat(samples[:, None], channels, axis=1).reshape(-1)
    full = 2 ** (8 * width - 1) - 1
    ints = np.round(data.astype(np.float64) * full).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints) if width == 3 else ints.astype(
            {2: "<i2", 4: "<i4"}[width]).tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return buf.getvalue()


def ffmpeg(*args: str, inputs: dict[str, bytes] | None = None, out: str, tmp: Path) -> bytes:
    """Run the wheel's ffmpeg with ``inputs`` written as files in ``tmp``; return ``out``'s bytes."""
    for name, data in (inputs or {}).items():
        (tmp / name).write_bytes(data)
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args, out], cwd=tmp, check=True, timeout=60)
    return (tmp / out).read_bytes()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def encode_audio(media_dir: Path) -> Callable[..., bytes]:
    """``encode_audio(fmt, seconds)``: a 440 Hz tone (stereo 44.1 kHz source) in that format."""
    cache: dict[tuple[str, float], bytes] = {}

    def make(fmt: str, seconds: float = 2.0) -> bytes:
        if (fmt, seconds) not in cache:
            src = wav_bytes(tone(seconds), channels=2)
            cache[fmt, seconds] = ffmpeg("-i", "src.wav", *AUDIO_FORMATS[fmt], inputs={"src.wav": src},
                                         out=f"tone{seconds}.{fmt}", tmp=media_dir)
        return cache[fmt, seconds]

    return make


@pytest.fixture(scope="session")
def make_video(media_dir: Path) -> Callable[..., bytes]:
    """``make_video(seconds, sound=True, fmt="mp4")``: a moving test pattern, 10 fps, 160x120."""
    cache: dict[tuple[float, bool, str, str], bytes] = {}

    def make(seconds: float = 3.0, sound: bool = True, fmt: str = "mp4", size: str = "160x120") -> bytes:
        key = (seconds, sound, fmt, size)
        if key not in cache:
            args = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate=10"]
            if sound:
                args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a",
                         "aac" if fmt == "mp4" else "libopus"]
            args += ["-c:v", "libx264" if fmt == "mp4" else "libvpx", "-pix_fmt", "yuv420p"]
            name = f"clip{seconds}{'s' if sound else ''}{size}.{fmt}"
            cache[key] = ffmpeg(*args, out=name, tmp=media_dir)
        return cache[key]

    return make


def png_bytes(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    buf = io.BytesIO()
    PILImage.new(mode, size, color if mode == "RGB" else None).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (30, 200, 30)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def gray_clip(tmp: Path, count: int, *, fps: int = 1, fmt: str = "mp4", extra: tuple[str, ...] = ()) -> bytes:
    """``count`` frames; frame *i* is flat gray at level 2*i (mod 256), so its level tells its time."""
    frames = np.stack([np.full((48, 64), (2 * i) % 256, np.uint8) for i in range(count)])
    (tmp / "frames.raw").write_bytes(frames.tobytes())
    codec = ["-c:v", "libx264", "-qp", "0", "-g", "10"] if fmt == "mp4" else ["-c:v", "libvpx", "-b:v", "1M"]
    return ffmpeg("-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x48", "-r", str(fps), "-i", "frames.raw",
                  *codec, "-pix_fmt", "yuv420p", *extra, out=f"gray{count}at{fps}.{fmt}", tmp=tmp)


def frame_index(frame: np.ndarray) -> float:
    """Which frame of :func:`gray_clip` this decoded frame shows."""
    return float(frame.mean()) / 2


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose IHDR claims ``width`` x ``height`` but holds a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))
