"""Audio and video decoding with hard limits: ffmpeg for sound, PyAV for frames.

Sound goes through the ``imageio-ffmpeg`` wheel's ffmpeg binary in a subprocess (a timeout, a
demuxer forced from the sniffed bytes so nothing is probed, file protocol only), which writes
16 kHz mono WAV on a pipe for pydub to read. Frames come from PyAV, which can seek to the few
frames we sample instead of decoding a long video end to end. Every failure is a MediaError.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptMedia, MediaError, MediaTooLarge, UnsupportedMedia
from .frames import even_frames, sample_times
from .images import first_line
from .sniff import sniff_mime
from .types import DecodedAudio, DecodedMedia, DecodedVideo, MediaLimits

__all__ = ["SAMPLE_RATE", "decode_audio_bytes", "decode_video_bytes", "pcm_to_float"]

SAMPLE_RATE = 16_000
#: sniffed MIME type -> the ffmpeg demuxer we force (no probing, so no HLS playlists, no surprises)
_DEMUXERS = {
    "audio/wav": "wav", "audio/mpeg": "mp3", "audio/ogg": "ogg", "audio/flac": "flac", "audio/aac": "aac",
    "audio/mp4": "mov", "video/mp4": "mov", "video/quicktime": "mov", "video/webm": "matroska",
    "video/x-msvideo": "avi",
}
_AUDIO_FORMATS = "wav, mp3, ogg/opus, flac, aac, m4a, webm"
#: seek instead of decoding through gaps longer than this between sampled frames
_SEEK_GAP_S = 4.0


# --------------------------------------------------------------------------- audio


def decode_audio_bytes(data: bytes, digest: str, limits: MediaLimits, *, track: bool = False) -> DecodedAudio:
    """Full-length 16 kHz mono float32; MediaTooLarge past ``limits.max_audio_s``.

    ``track=True`` reads a video's sound track (its container duration is the video's, so the
    truncation check, which compares the header's duration with what decodes, is skipped).
    """
    demuxer = _demuxer(data, "audio")
    if demuxer == "wav" and _wav_truncated(data):
        raise CorruptMedia("truncated: the WAV header claims more data than the file holds")
    cap = limits.max_audio_s + 1.0  # decode one second past the cap, never the whole of a huge file
    with tempfile.TemporaryDirectory(prefix="omniguard-") as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(data)
        cmd = [
            _ffmpeg(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
            "-protocol_whitelist", "file", "-f", demuxer, "-i", str(path),
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE),
            "-c:a", "pcm_s16le", "-t", f"{cap:.3f}", "-f", "wav", "pipe:1",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=limits.decode_timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise MediaTooLarge(f"audio took over {limits.decode_timeout_s:g} s to decode") from None
    log = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        if "matches no streams" in log:
            raise UnsupportedMedia("no audio stream in the file")
        raise CorruptMedia(f"{demuxer} audio does not decode ({_ffmpeg_reason(log)})")
    samples = _wav_to_float(proc.stdout)
    seconds = len(samples) / SAMPLE_RATE
    if seconds > limits.max_audio_s:
        raise MediaTooLarge(f"audio is over the {limits.max_audio_s:g}-second limit")
    if not len(samples):
        raise CorruptMedia(f"{demuxer} audio holds no samples")
    declared = _declared_duration(log)
    if not track and declared and seconds < declared * 0.9 - 0.25:
        raise CorruptMedia(f"truncated: the header says {declared:.1f} s, only {seconds:.1f} s decode")
    return DecodedAudio(samples, digest)


def pcm_to_float(raw: bytes, sample_width: int, channels: int = 1) -> np.ndarray:
    """Signed PCM of any width (8/16/24/32-bit) to mono float32 in [-1, 1].

    Scaled by the sample width: a fixed 32768 would make 32-bit audio (ffmpeg's output for
    some Opus files) 65536 times too loud and 8-bit audio 256 times too quiet.
    """
    if sample_width == 3:  # little-endian 24-bit: widen to 32-bit by shifting into the top bytes
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        raw = np.concatenate([np.zeros((len(b), 1), np.uint8), b], axis=1).tobytes()
        sample_width = 4
    dtypes: dict[int, Any] = {1: np.int8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}
    if sample_width not in dtypes:
        raise CorruptMedia(f"unsupported sample width: {sample_width} bytes")
    ints = np.frombuffer(raw, dtype=dtypes[sample_width])
    samples = ints.astype(np.float32) / float(2 ** (8 * sample_width - 1))
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _wav_to_float(wav: bytes) -> np.ndarray:
    AudioSegment, fix_wav_headers = _pydub()
    buf = bytearray(wav)
    fix_wav_headers(buf)  # ffmpeg cannot fill in the sizes when it writes to a pipe
    try:
        seg = AudioSegment.from_wav(io.BytesIO(bytes(buf)))
    except Exception as exc:  # noqa: BLE001 - pydub raises several types for a bad header
        raise CorruptMedia(f"decoded audio is not readable WAV ({first_line(exc)})") from None
    return pcm_to_float(seg.raw_data, seg.sample_width, seg.channels)


@functools.lru_cache(maxsize=1)
def _pydub() -> tuple[Any, Any]:
    with warnings.catch_warnings():  # pydub warns at import that no system ffmpeg is on PATH
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment
        from pydub.audio_segment import fix_wav_headers
    return AudioSegment, fix_wav_headers


@functools.lru_cache(maxsize=1)
def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _demuxer(data: bytes, kind: str) -> str:
    _, mime = sniff_mime(data[:64])
    demuxer = _DEMUXERS.get(mime or "")
    if demuxer is None:
        what = f"{mime} bytes" if mime else "an unrecognised format"
        formats = _AUDIO_FORMATS if kind == "audio" else "mp4, mov, webm, mkv, avi"
        raise UnsupportedMedia(f"not {kind} we read ({what}); use {formats}")
    return demuxer


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_LOG_LINE = re.compile(r"^(?:\[[^\]]* @ [^\]]*\]\s*)?\[(error|fatal)\]\s*(.+)$")


def _declared_duration(log: str) -> float | None:
    """The input's duration as its header states it (None when ffmpeg only guesses it)."""
    if "Estimating duration from bitrate" in log:
        return None  # a guess from the file size: VBR files without a header would look truncated
    m = _DURATION.search(log)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None


def _ffmpeg_reason(log: str) -> str:
    """ffmpeg's first error line (the cause; later ones only say that opening failed)."""
    for line in log.splitlines():
        m = _LOG_LINE.match(line.strip())
        if m:
            return re.sub(r"\S*omniguard-\S*", "<file>", m.group(2).rstrip("."))[:120]
    return "ffmpeg failed"


def _wav_truncated(data: bytes) -> bool:
    """A WAV whose data chunk claims more bytes than the file holds (ffmpeg reads it quietly)."""
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"data":
            return size not in (0, 0xFFFFFFFF) and pos + 8 + size > len(data) + 1
        pos += 8 + size + (size & 1)
    return False


# --------------------------------------------------------------------------- video


def decode_video_bytes(data: bytes, digest: str, limits: MediaLimits) -> list[DecodedMedia]:
    """A DecodedVideo of sampled frames and, when the video has sound, a DecodedAudio of it."""
    import av

    demuxer = _demuxer(data, "video")
    try:
        with av.open(io.BytesIO(data), format=demuxer) as container:
            if not container.streams.video:
                raise UnsupportedMedia("no video stream in the file (pass sound alone as Audio)")
            has_sound = bool(container.streams.audio)
            frames, fps = _sample_frames(container, container.streams.video[0], limits)
    except av.FFmpegError as exc:
        raise CorruptMedia(f"video does not decode ({getattr(exc, 'strerror', None) or first_line(exc)})") from None
    out: list[DecodedMedia] = [DecodedVideo(even_frames(frames), fps, digest)]
    if has_sound:
        sound_digest = hashlib.sha256(f"{digest}:sound".encode()).hexdigest()
        try:
            out.append(decode_audio_bytes(data, sound_digest, limits, track=True))
        except MediaError as exc:
            raise type(exc)(f"sound track: {exc.reason}") from exc
    return out


def _sample_frames(container: Any, stream: Any, limits: MediaLimits) -> tuple[list[np.ndarray], float]:
    import av

    deadline = time.monotonic() + limits.decode_timeout_s
    ctx = stream.codec_context
    if ctx.width * ctx.height > limits.max_image_pixels:
        raise MediaTooLarge(f"{ctx.width}x{ctx.height} frames are over the {limits.max_image_pixels}-pixel limit")
    duration = _video_duration(container, stream)
    if duration is not None and duration > limits.max_video_s:
        raise MediaTooLarge(f"{duration:.0f} s of video is over the {limits.max_video_s:g}-second limit")
    stream.thread_type = "AUTO"
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    grabber = _Grabber(limits, deadline)
    if duration is None:  # a live recording without a duration header: scan it all, thinning as we go
        return grabber.scan(container.decode(stream), start)
    times, fps = sample_times(duration, limits)
    frames: list[np.ndarray] = []
    it, last = container.decode(stream), None
    for t in (start + x for x in times):
        if last is not None and last.time is not None and last.time >= t - 1e-3:
            frames.append(grabber.rgb(last))
            continue
        if last is not None and last.time is not None and t - last.time > _SEEK_GAP_S:
            try:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
                it = container.decode(stream)
            except av.FFmpegError:  # some files do not seek; read on from where we are
                pass
        for frame in it:
            grabber.tick(frame, start)
            last = frame
            if frame.time is None or frame.time >= t - 1e-3:
                frames.append(grabber.rgb(frame))
                break
        else:
            break
    end = start + duration + max(1.0, 0.05 * duration)
    for frame in it:  # the header's duration must be true, or frames past it go unjudged
        grabber.tick(frame, start)
        if frame.time is not None and frame.time > end:
            raise CorruptMedia(f"frames run past the {duration:.1f} s the header declares")
    if not frames:
        raise CorruptMedia("no video frame decodes")
    return frames, fps


class _Grabber:
    """Frame conversion and the limits that hold while decoding."""

    def __init__(self, limits: MediaLimits, deadline: float) -> None:
        self.limits, self.deadline = limits, deadline
        self.size: tuple[int, int] | None = None

    def tick(self, frame: Any, start: float) -> None:
        if time.monotonic() > self.deadline:
            raise MediaTooLarge(f"video took over {self.limits.decode_timeout_s:g} s to decode")
        if frame.time is not None and frame.time - start > self.limits.max_video_s:
            raise MediaTooLarge(f"video runs past the {self.limits.max_video_s:g}-second limit")

    def rgb(self, frame: Any) -> np.ndarray:
        if self.size is None:
            scale = min(1.0, (self.limits.video_pixel_budget / max(1, frame.width * frame.height)) ** 0.5)
            self.size = (max(2, int(frame.width * scale)), max(2, int(frame.height * scale)))
        arr = frame.reformat(width=self.size[0], height=self.size[1], format="rgb24").to_ndarray()
        turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # phone videos carry a display rotation
        return np.ascontiguousarray(np.rot90(arr, turns)) if turns else arr

    def scan(self, frames: Any, start: float) -> tuple[list[np.ndarray], float]:
        """Keep one frame per step; when there are too many, drop every other and double the step."""
        step = 1.0 / self.limits.video_fps
        kept: list[np.ndarray] = []
        times: list[float] = []
        for frame in frames:
            self.tick(frame, start)
            t = (frame.time if frame.time is not None else len(kept) * step) - start
            if times and t < times[-1] + step - 1e-3:
                continue
            kept.append(self.rgb(frame))
            times.append(t)
            if len(kept) > self.limits.max_video_frames:
                kept, times, step = kept[::2], times[::2], step * 2
        if not kept:
            raise CorruptMedia("no video frame decodes")
        return kept, 1.0 / step


def _video_duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None
