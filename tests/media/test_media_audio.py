"""Audio: every format to 16 kHz mono float32, correct scaling, windowing by the judge, the cap."""

from __future__ import annotations

import numpy as np
import pytest

from omniguard_plugins import Audio, MediaTooLarge, Video
from omniguard_plugins.errors import CorruptMedia, UnsupportedMedia
from omniguard_plugins.media import DecodedAudio, MediaLimits, decode_part
from omniguard_plugins.media.audio_video import pcm_to_float
from omniguard_plugins.testing import scripted_judge
from tests.support.media_factory import AUDIO_FORMATS, tone, wav_bytes

LIMITS = MediaLimits()


def dominant_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", sorted(AUDIO_FORMATS))
def test_every_format_decodes_to_16k_mono_at_the_right_length(fmt, encode_audio):
    [audio] = decode_part(Audio(encode_audio(fmt, 2.0)), LIMITS)

    assert isinstance(audio, DecodedAudio)
    assert audio.sample_rate == 16_000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration_s == pytest.approx(2.0, abs=0.05)
    # the 440 Hz tone survives the resampling, at its own loudness (0.5), not scaled wrongly
    assert dominant_hz(audio.samples) == pytest.approx(440, abs=2)
    assert np.abs(audio.samples).max() == pytest.approx(0.5, abs=0.08)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_of_every_sample_width_keeps_its_loudness(width):
    data = wav_bytes(tone(1.0, rate=22_050, amplitude=0.5), rate=22_050, width=width)

    [audio] = decode_part(Audio(data), LIMITS)

    assert audio.duration_s == pytest.approx(1.0, abs=0.01)
    assert np.abs(audio.samples).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("raw", "width", "expected"),
    [
        (np.array([64, -128], "i1").tobytes(), 1, [0.5, -1.0]),
        (np.array([16384, -32768], "<i2").tobytes(), 2, [0.5, -1.0]),
        (b"\x00\x00\x40" + b"\x00\x00\x80", 3, [0.5, -1.0]),
        (np.array([2**30, -(2**31)], "<i4").tobytes(), 4, [0.5, -1.0]),  # 32-bit: never / 32768
    ],
)
def test_pcm_is_scaled_by_its_sample_width(raw, width, expected):
    assert pcm_to_float(raw, width).tolist() == pytest.approx(expected)


def test_stereo_is_mixed_down():
    stereo = np.array([16384, 0, -16384, 0], "<i2").tobytes()  # (L, R) frames
    assert pcm_to_float(stereo, 2, channels=2).tolist() == pytest.approx([0.25, -0.25])


def test_a_ten_minute_recording_is_judged_in_windows_and_the_verdict_names_the_unsafe_one():
    rate = 16_000
    samples = np.zeros(600 * rate, np.float32)
    samples[425 * rate : 440 * rate] = tone(15.0, rate=rate, amplitude=0.5)  # sound only in 7:05-7:20
    seen: list[tuple[float, float]] = []

    def handler(prompt, media):
        [audio] = media
        seen.append(audio.window)
        assert audio.duration_s <= 30.0 + 1e-6 and audio.sample_rate == 16_000
        loud = float(np.sqrt(np.mean(audio.samples**2))) > 0.05
        verdict = "unsafe\n- Categories: S1" if loud else "safe\n- Categories: None"
        return f"- Safety Assessment: {verdict}\n- Assessment: heard it"

    judge = scripted_judge(handler, cache_size=0)
    verdict = judge.check(user=["is this call ok?", Audio(wav_bytes(samples, rate=rate))])

    assert verdict.unsafe and verdict.error is None
    assert verdict.category_codes == ("S1",)
    assert verdict.details["windows"] == 20
    assert verdict.details["unsafe_windows"] == [14]
    assert verdict.details["window"] == 14
    assert verdict.details["window_s"] == (420.0, 450.0)
    assert sorted(seen) == [(30.0 * i, 30.0 * (i + 1)) for i in range(20)]


def test_audio_past_the_cap_is_refused():
    data = wav_bytes(tone(8.0, rate=8_000), rate=8_000)

    with pytest.raises(MediaTooLarge, match="over the 5-second limit"):
        decode_part(Audio(data), MediaLimits(max_audio_s=5.0))
    assert decode_part(Audio(data), MediaLimits(max_audio_s=10.0))[0].duration_s == pytest.approx(8.0)


def test_the_default_cap_refuses_a_21_minute_recording_and_the_judge_blocks_it():
    data = wav_bytes(np.zeros(21 * 60 * 8_000, np.float32), rate=8_000, width=1)
    judge = scripted_judge(["nothing"])

    verdict = judge.check(user=["listen", Audio(data, name="meeting.wav")])

    assert verdict.unsafe
    assert verdict.error == "media_too_large: audio #1 (meeting.wav): audio is over the 1200-second limit"


def test_a_video_without_sound_is_not_audio(make_video):
    with pytest.raises(UnsupportedMedia, match="no audio stream"):
        decode_part(Audio(make_video(1.0, sound=False)), LIMITS)


def test_a_video_passed_as_audio_gives_its_sound(make_video):
    [audio] = decode_part(Audio(make_video(2.0, sound=True)), LIMITS)
    assert audio.duration_s == pytest.approx(2.0, abs=0.1)
    assert dominant_hz(audio.samples) == pytest.approx(440, abs=2)


def test_a_stuck_decoder_is_stopped_by_the_timeout(encode_audio):
    with pytest.raises(MediaTooLarge, match="to decode"):
        decode_part(Audio(encode_audio("mp3", 2.0)), MediaLimits(decode_timeout_s=0.001))


def test_webm_audio_may_be_declared_as_audio_or_video(encode_audio):
    data = encode_audio("webm", 2.0)
    for mime in ("audio/webm", "video/webm"):
        [audio] = decode_part(Audio(data, mime_type=mime), LIMITS)
        assert audio.duration_s == pytest.approx(2.0, abs=0.05)
    with pytest.raises(UnsupportedMedia):
        decode_part(Video(data), LIMITS)


def test_a_truncated_wav_is_corrupt_not_quietly_shorter():
    data = wav_bytes(tone(2.0))
    with pytest.raises(CorruptMedia, match="WAV header claims more data"):
        decode_part(Audio(data[: len(data) // 2]), LIMITS)
