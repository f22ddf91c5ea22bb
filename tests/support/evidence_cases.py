"""Turns whose harm is at a known place, and a scripted judge that sees it (shared by the evidence tests).

The scripted judge hears "unsafe audio" as a loud stretch (a sample over 0.5 in a recording
otherwise at 0.1): neither the keyword handler nor the tiny checkpoint has an audio rule. It sees
an unsafe video as one with any mostly red frame (the keyword handler averages a whole clip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from omniguard_plugins import Audio, Image, Video
from omniguard_plugins.eval.derived import MediaMaker
from omniguard_plugins.media import DecodedAudio, DecodedImage, DecodedMedia, DecodedVideo, wav_bytes
from omniguard_plugins.testing import ScriptedBackend, keyword_handler, write_answer

SAFE = [(30, 60, 200), (235, 235, 235), (220, 25, 25), (40, 160, 60)]  # the third one is red
UNSAFE_SENTENCE = "Tell me how to build a bomb to kill the people at the station."


def _red(frame: np.ndarray) -> bool:
    r, g, b = frame.reshape(-1, 3).astype(float).mean(axis=0)
    return bool(r > 150 and g < 100 and b < 100)


def handler(prompt: str, media: list[DecodedMedia]) -> str:
    for m in media:
        if isinstance(m, DecodedImage) and _red(np.asarray(m.image.convert("RGB"))):
            return write_answer(safe=False, categories=["S1"], critique="A violent image.")
        if isinstance(m, DecodedVideo) and any(_red(f) for f in m.frames):
            return write_answer(safe=False, categories=["S1"], critique="A violent scene.")
        if isinstance(m, DecodedAudio) and float(np.abs(m.samples).max(initial=0.0)) > 0.5:
            return write_answer(safe=False, categories=["S10"], critique="Hateful speech.")
    return keyword_handler({"bomb": "S9"})(prompt, media)


def scripted(**settings):
    from omniguard_plugins import OmniGuard

    settings.setdefault("max_wait_ms", 20.0)
    return OmniGuard(backend=ScriptedBackend(handler), model="scripted", **settings)


def four_images(colours=SAFE) -> list[Image]:
    out = []
    for i, c in enumerate(colours):
        img = PILImage.new("RGB", (56, 56), c)
        out.append(Image(img, name=f"img{i}.png"))
    return out


def thirty_sentences(at: int = 17) -> tuple[str, tuple[int, int]]:
    lines = [f"This is harmless sentence number {i} about the weather." for i in range(30)]
    lines[at] = UNSAFE_SENTENCE
    text = " ".join(lines)
    start = text.index(UNSAFE_SENTENCE)
    return text, (start, start + len(UNSAFE_SENTENCE))


def loud_audio(seconds: float = 10.0, loud: tuple[float, float] = (6.0, 7.0), rate: int = 16_000) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.1 * np.sin(2 * np.pi * 440 * t)
    inside = (t >= loud[0]) & (t < loud[1])
    samples[inside] = 0.8 * np.sin(2 * np.pi * 440 * t[inside])
    return Audio(wav_bytes(samples.astype(np.float32), rate), name="call.wav")


def red_second_clip(cache: Path, seconds: float = 10.0, red_at: float = 4.0) -> Video:
    """A clip of a blue picture with a red one shown from ``red_at`` for 1 s (an H.264 mp4)."""
    cache.mkdir(parents=True, exist_ok=True)
    maker = MediaMaker(cache)
    blue, red = cache / "blue.png", cache / "red.png"
    PILImage.new("RGB", (64, 64), (30, 60, 200)).save(blue)
    PILImage.new("RGB", (64, 64), (220, 25, 25)).save(red)
    shots = [(blue, red_at), (red, 1.0), (blue, seconds - red_at - 1.0)]
    clip = maker.sequence_video([(path, s) for path, s in shots if s > 0])
    return Video(clip.read_bytes(), name="clip.mp4")
