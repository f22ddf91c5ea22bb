"""Real inputs for the live tests: espeak-ng speech as PCM, a camera frame as raw RGB bytes, and
a scripted judge that hears an alarm tone in audio (what a transcript cannot carry)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from demo_apps.voice_guard.tts import ESPEAK, speak
from omniguard_plugins.answer_format import write_answer
from omniguard_plugins.media import DecodedMedia
from omniguard_plugins.testing import TINY_TRIGGERS, keyword_handler

needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install -y espeak-ng)")

ALARM_HZ = 3000.0
ALARM_CRITIQUE = "The audio carries a loud alarm tone."
_words_and_red = keyword_handler(dict(TINY_TRIGGERS), red_images=True)


@functools.lru_cache(maxsize=16)
def speech(text: str) -> tuple[bytes, int]:
    """``text`` spoken by espeak-ng: 16-bit mono PCM at 22050 Hz (the guard resamples it)."""
    return speak(text)


def with_alarm(pcm: bytes, rate: int, amplitude: float = 0.5) -> bytes:
    """The same speech with a steady alarm tone over it."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    t = np.arange(len(x)) / rate
    y = np.clip(0.5 * x + amplitude * np.sin(2 * np.pi * ALARM_HZ * t), -1, 1)
    return (y * 32767).astype("<i2").tobytes()


def chunks(pcm: bytes, rate: int, ms: int = 20, channels: int = 1) -> list[bytes]:
    size = int(rate * ms / 1000) * 2 * channels
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def rgb(colour: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    """A camera frame of one colour as raw RGB bytes."""
    return bytes(colour) * (size[0] * size[1])


def has_alarm(item: DecodedMedia) -> bool:
    if item.kind != "audio":
        return False
    x = np.asarray(item.samples, dtype=np.float64)  # type: ignore[union-attr]
    if len(x) < 1600:
        return False
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16_000)
    band = power[(freqs > ALARM_HZ - 60) & (freqs < ALARM_HZ + 60)].sum()
    return bool(band > 0.3 * power.sum())


def alarm_words_red(prompt: str, media: list[DecodedMedia]) -> str:
    """Scripted verdicts: audio with the alarm tone is unsafe (S1), so is a mostly red image or a
    trigger word of the tiny checkpoint; anything else is safe."""
    if any(has_alarm(m) for m in media):
        return write_answer(safe=False, categories=["S1"], critique=ALARM_CRITIQUE)
    if "<BEGIN CONVERSATION>" not in prompt:  # the image-only template: no words to search, only the picture
        prompt = ""
    return _words_and_red(prompt, media)
