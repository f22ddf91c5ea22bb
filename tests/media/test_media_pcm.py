"""The one WAV writer, Audio.from_pcm and the media identity every cache keys on."""

from __future__ import annotations

import numpy as np
import pytest

from omniguard_plugins import Audio
from omniguard_plugins.errors import ContentError
from omniguard_plugins.media import DecodedAudio, DecodedVideo, MediaCache, MediaLimits, decode_part, wav_bytes
from tests.support.media_factory import tone


def test_from_pcm_keeps_loudness_and_resamples_once_to_16k():
    left = tone(1.0, rate=48_000, amplitude=0.5)
    pcm = (np.stack([left, left], axis=1) * 32767).astype("<i2").tobytes()  # interleaved stereo
    decoded = decode_part(Audio.from_pcm(pcm, 48_000, 2), MediaLimits())[0]
    assert isinstance(decoded, DecodedAudio)
    assert decoded.sample_rate == 16_000
    assert len(decoded.samples) == 16_000
    assert abs(float(np.abs(decoded.samples).max()) - 0.5) < 0.01


@pytest.mark.parametrize(("pcm", "rate", "channels", "reason"), [
    (b"\0\0\0", 16_000, 1, "whole 16-bit frames"),
    (b"\0\0", 16_000, 2, "whole 16-bit frames"),
    (b"\0\0", 100, 1, "sample rate"),
    (b"\0\0", 16_000, 0, "channels"),
])
def test_from_pcm_refuses_what_cannot_be_pcm(pcm, rate, channels, reason):
    with pytest.raises(ContentError, match=reason):
        Audio.from_pcm(pcm, rate, channels)


def test_from_pcm_refuses_non_bytes():
    with pytest.raises(ContentError, match="16-bit PCM"):
        Audio.from_pcm(np.zeros(10, np.int16), 16_000)  # type: ignore[arg-type]


def test_wav_bytes_writes_float_int16_and_bytes_the_same():
    samples = tone(0.1, rate=16_000)
    ints = (np.clip(samples, -1, 1) * 32767).round().astype(np.int16)
    assert wav_bytes(samples, 16_000) == wav_bytes(ints, 16_000) == wav_bytes(ints.tobytes(), 16_000)


def test_spans_of_one_source_have_their_own_keys():
    audio = DecodedAudio(np.zeros(160_000, np.float32), "abc")
    video = DecodedVideo(np.zeros((20, 8, 8, 3), np.uint8), 2.0, "def")
    assert audio.key == ("audio", "abc", None)
    assert audio.span(6.0, 7.0).key == ("audio", "abc", (6.0, 7.0))
    assert audio.span(6.0, 8.0).span(0.5, 1.0).window == (6.5, 7.0)
    part = video.span(4.0, 5.0)
    assert part.key == ("video", "def", (4.0, 5.0))
    assert len(part.frames) == 2 and part.fps == 2.0
    odd = video.span(4.0, 5.5)  # three frames: padded to four, the window says which were shown
    assert len(odd.frames) == 4 and odd.window == (4.0, 5.5)
    assert len({audio.key, audio.span(0, 1).key, audio.span(1, 2).key, video.key, part.key}) == 5


def test_the_result_cache_tells_spans_apart():
    from omniguard_plugins._runner import _cache_key
    from omniguard_plugins.backends.base import GenerationRequest

    video = DecodedVideo(np.zeros((20, 8, 8, 3), np.uint8), 2.0, "def")
    keys = {_cache_key("m", GenerationRequest("p", media=(m,))) for m in (video, video.span(0, 1), video.span(1, 2))}
    assert len(keys) == 3


def test_media_cache_is_still_shared_by_the_same_bytes():
    data = wav_bytes(tone(0.5, rate=16_000), 16_000)
    cache = MediaCache()
    first = decode_part(Audio(data), MediaLimits(), cache)
    second = decode_part(Audio(data), MediaLimits(), cache)
    assert first is second and first[0].key == ("audio", first[0].sha256, None)


def test_tower_cache_keys_tell_equal_shaped_spans_apart():
    from omniguard_plugins.backends.base import GenerationRequest
    from omniguard_plugins.backends.transformers.media_features import media_keys

    video = DecodedVideo(np.zeros((20, 8, 8, 3), np.uint8), 2.0, "def")
    audio = DecodedAudio(np.zeros(160_000, np.float32), "abc")
    keys = media_keys([GenerationRequest("p", media=(video.span(0, 1), video.span(1, 2), audio.span(0, 1),
                                                     audio.span(1, 2)))])
    assert len(set(keys["video"])) == 2 and len(set(keys["audio"])) == 2


def test_the_encoded_part_cache_tells_spans_apart():
    from omniguard_plugins.backends.openai import OpenAIBackend

    backend = OpenAIBackend(["http://127.0.0.1:9"], model="m")
    audio = DecodedAudio((np.arange(32_000) % 7 / 10).astype(np.float32), "abc")
    try:
        first, second = backend._media_part(audio.span(0, 1)), backend._media_part(audio.span(1, 2))
        assert first != second and backend._media_part(audio.span(0, 1)) is first
    finally:
        backend.close()
