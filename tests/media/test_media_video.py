"""Video: frames sampled at a rate under frame and pixel budgets, the sound as its own audio."""

from __future__ import annotations

import io
import math
import subprocess

import numpy as np
import pytest
from PIL import Image as PILImage

from omniguard_plugins import Image, MediaTooLarge, UnsupportedMedia, Video
from omniguard_plugins.media import DecodedAudio, DecodedVideo, MediaLimits, decode_part
from omniguard_plugins.testing import scripted_judge
from tests.support.media_factory import FFMPEG, ffmpeg, frame_index, gray_clip

LIMITS = MediaLimits()


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_a_video_with_sound_gives_frames_and_its_sound_track(make_video, fmt):
    video, audio = decode_part(Video(make_video(3.0, sound=True, fmt=fmt)), LIMITS)

    assert isinstance(video, DecodedVideo) and isinstance(audio, DecodedAudio)
    assert video.frames.shape == (6, 120, 160, 3) and video.frames.dtype == np.uint8
    assert video.fps == 2.0 and video.duration_s == pytest.approx(3.0)
    assert audio.sample_rate == 16_000 and audio.duration_s == pytest.approx(3.0, abs=0.1)
    assert audio.sha256 != video.sha256  # the track is its own part


def test_a_video_without_sound_gives_only_frames(make_video):
    [video] = decode_part(Video(make_video(3.0, sound=False)), LIMITS)
    assert video.kind == "video" and video.frames.shape == (6, 120, 160, 3)


def test_both_the_frames_and_the_sound_reach_the_model_never_as_audio_in_video(make_video):
    kinds = []

    def handler(prompt, media):
        kinds.append([m.kind for m in media])
        return "- Safety Assessment: safe\n- Categories: None"

    judge = scripted_judge(handler)
    assert judge.check(user=["what happens here?", Video(make_video(3.0, sound=True))]).safe
    assert judge.check(user=["and here?", Video(make_video(3.0, sound=False))]).safe
    assert kinds == [["video", "audio"], ["video"]]


@pytest.mark.parametrize("max_frames", [64, 8])
def test_a_long_video_is_sampled_evenly_end_to_end(media_dir, max_frames):
    clip = gray_clip(media_dir, 120)  # 1 fps, frame i at level 2i, a keyframe every 10 s
    [video] = decode_part(Video(clip), MediaLimits(max_video_frames=max_frames))

    step = 120 / max_frames  # 2 fps would be 240 frames: spread the budget over the whole clip
    assert len(video.frames) == max_frames and video.fps == pytest.approx(1 / step)
    shown = [frame_index(f) for f in video.frames]
    assert shown == pytest.approx([math.ceil(i * step - 1e-9) for i in range(max_frames)], abs=1.0)


def test_frames_come_in_pairs_for_the_vision_tower(media_dir):
    clip = gray_clip(media_dir, 5, fps=2)  # 2.5 s at 2 fps -> 5 frames, padded to 6 with the last
    [video] = decode_part(Video(clip), LIMITS)
    assert len(video.frames) == 6
    assert np.array_equal(video.frames[-1], video.frames[-2])


def test_frames_are_downscaled_to_the_pixel_budget(make_video):
    [video] = decode_part(Video(make_video(1.0, sound=False, size="640x480")), LIMITS)
    _, h, w, _ = video.frames.shape
    assert h * w <= LIMITS.video_pixel_budget and w / h == pytest.approx(4 / 3, rel=0.01)


def test_a_video_over_the_length_cap_is_refused_before_decoding(media_dir):
    with pytest.raises(MediaTooLarge, match="over the 60-second limit"):
        decode_part(Video(gray_clip(media_dir, 120)), MediaLimits(max_video_s=60))


def test_a_recording_without_a_duration_header_is_still_judged_to_its_end(media_dir):
    """Browsers' MediaRecorder webm has no duration: the clip is scanned and thinned as it goes."""
    (media_dir / "frames.raw").write_bytes(
        np.stack([np.full((48, 64), 2 * i, np.uint8) for i in range(40)]).tobytes())
    live = subprocess.run(
        [FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x48", "-r", "1", "-i", "frames.raw",
         "-c:v", "libvpx", "-b:v", "1M", "-f", "webm", "pipe:1"], cwd=media_dir, capture_output=True, check=True).stdout
    import av

    with av.open(io.BytesIO(live)) as c:
        assert not c.duration and not c.streams.video[0].duration  # really no header duration

    [video] = decode_part(Video(live), MediaLimits(max_video_frames=8))

    shown = [frame_index(f) for f in video.frames]
    assert len(shown) <= 8 and shown[0] == pytest.approx(0, abs=1)
    assert shown[-1] >= 28  # the last stretch of the clip was seen
    assert shown == sorted(shown)


def test_a_phone_video_is_turned_upright(make_video, media_dir):
    (media_dir / "plain.mp4").write_bytes(make_video(1.0, sound=False))
    rotated = ffmpeg("-display_rotation", "90", "-i", "plain.mp4", "-c", "copy", out="rotated.mp4", tmp=media_dir)
    [plain] = decode_part(Video(make_video(1.0, sound=False)), LIMITS)
    [upright] = decode_part(Video(rotated), LIMITS)
    assert upright.frames.shape == (2, 160, 120, 3)
    assert np.array_equal(upright.frames[0], np.rot90(plain.frames[0], 1))


def _animation(fmt: str, colors: list[tuple[int, int, int]], ms: int = 200) -> bytes:
    frames = [PILImage.new("RGB", (32, 24), c) for c in colors]
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=ms, loop=0, **extra)
    return buf.getvalue()


COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
          (255, 0, 255), (255, 255, 255), (0, 0, 0), (128, 0, 0), (0, 128, 0)]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
@pytest.mark.parametrize("part", [Image, Video])
def test_an_animated_image_is_judged_as_a_short_video(fmt, part):
    data = _animation(fmt, COLORS)  # 10 frames x 200 ms = 2 s

    [video] = decode_part(part(data), LIMITS)

    assert isinstance(video, DecodedVideo) and video.fps == 2.0
    # 2 fps over 2 s: t = 0, 0.5, 1.0, 1.5 s show frames 0, 2, 5, 7
    assert [tuple(int(v) for v in f[5, 5]) for f in video.frames] == [COLORS[i] for i in (0, 2, 5, 7)]


def test_an_animation_with_too_many_pixels_in_all_is_refused():
    data = _animation("GIF", COLORS * 5, ms=50)  # 50 frames of 32x24
    with pytest.raises(MediaTooLarge, match="too many pixels"):
        decode_part(Image(data), MediaLimits(max_image_pixels=32 * 24 * 3))


def test_a_still_image_is_not_a_video():
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buf, "GIF")
    with pytest.raises(UnsupportedMedia, match="still image"):
        decode_part(Video(buf.getvalue()), LIMITS)


def test_an_animation_over_the_length_cap_is_refused():
    with pytest.raises(MediaTooLarge, match="the animation runs 10 s, over the 5-second limit"):
        decode_part(Image(_animation("GIF", COLORS, ms=1000)), MediaLimits(max_video_s=5))
