"""Derived media: clips made from the labelled images with the imageio-ffmpeg binary, speech
with espeak-ng (skipped without it), both cached, read back by the judge's own decoders."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from omniguard_plugins import Audio, Image, Text, Video
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.eval import MediaMaker, espeak_available, load_dataset
from omniguard_plugins.media import MediaLimits, decode_part

needs_espeak = pytest.mark.skipif(not espeak_available(),
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


def _frames(path: Path) -> np.ndarray:
    (video,) = decode_part(Video(path), MediaLimits())
    return np.asarray(video.frames, dtype=float)


def test_flash_clip_shows_the_unsafe_image_for_one_second(data_root: Path, media_cache: Path) -> None:
    (item,) = load_dataset("figstep_flash_video", data_root, limit=1, cache_dir=media_cache)
    (clip,) = item.user
    assert isinstance(clip, Video) and item.unsafe and item.modality == "video"
    frames = _frames(clip.source)  # the judge samples 2 fps: 10 frames over 5 s
    assert len(frames) == 10
    # FigStep images are black text on white; the MOSSBench background is a photo-like scene
    white = [(f > 200).all(axis=-1).mean() for f in frames]
    flash = [n for n, w in enumerate(white) if w > 0.5]
    assert flash == [4, 5], white  # seconds 2.0-3.0
    assert np.abs(frames[0] - frames[9]).mean() < 3  # the same background before and after


def test_still_clips_keep_the_question_and_label(data_root: Path, media_cache: Path) -> None:
    items = load_dataset("mossbench_video", data_root, limit=2, cache_dir=media_cache)
    assert {i.unsafe for i in items} == {True, False}
    for item in items:
        question, clip = item.user
        assert isinstance(question, Text) and isinstance(clip, Video)
        assert item.modality == "text+video" and item.id.startswith("mossbench_video/")
        assert len(_frames(clip.source)) == 6  # 3 s at 2 fps
    (still,) = load_dataset("figstep_video", data_root, limit=1, cache_dir=media_cache)[0].user
    frames = _frames(still.source)
    assert np.abs(frames[0] - frames[-1]).mean() < 3


def test_clips_are_cached_by_content(tmp_path: Path, media_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image as PILImage

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    PILImage.new("RGB", (64, 40), (220, 10, 10)).save(red)
    PILImage.new("RGB", (64, 40), (10, 10, 220)).save(blue)
    maker = MediaMaker(media_cache)
    first = maker.flash_video(blue, red)
    assert first.suffix == ".mp4" and first.parent.parent == media_cache

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached clip was made again")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert maker.flash_video(blue, red) == first
    with pytest.raises(AssertionError):
        maker.flash_video(red, blue)  # another clip: not in the cache
    with pytest.raises(ConfigError, match="no such image"):
        maker.still_video(tmp_path / "absent.png")


@needs_espeak
def test_spoken_prompts_and_responses(data_root: Path, media_cache: Path) -> None:
    (prompt,) = load_dataset("xstest_audio", data_root, limit=1, cache_dir=media_cache)
    (speech,) = prompt.user
    assert isinstance(speech, Audio) and prompt.modality == "audio" and prompt.direction == "input"
    (audio,) = decode_part(speech, MediaLimits())
    assert 0.5 < audio.duration_s < 30
    assert np.abs(audio.samples).max() > 0.05  # not silence
    (response,) = load_dataset("xstest_response_audio", data_root, limit=1, cache_dir=media_cache)
    assert isinstance(response.user[0], Text) and isinstance(response.assistant[0], Audio)
    assert response.modality == "text+audio" and response.direction == "output"
    (cross,) = load_dataset("mossbench_audio", data_root, limit=1, cache_dir=media_cache)
    assert [type(p) for p in cross.user] == [Audio, Image]


@needs_espeak
def test_long_text_is_cut_under_the_audio_window(media_cache: Path) -> None:
    maker = MediaMaker(media_cache, max_words=60)
    (audio,) = decode_part(Audio(maker.speech("word " * 500)), MediaLimits())
    assert audio.duration_s < MediaLimits().audio_window_s
    assert maker.speech("word " * 500) == maker.speech("word " * 60)  # the same spoken text, one file


def test_spoken_sets_need_espeak(data_root: Path, monkeypatch: pytest.MonkeyPatch, media_cache: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="needs espeak-ng"):
        load_dataset("advbench_audio", data_root, limit=1, cache_dir=media_cache)
