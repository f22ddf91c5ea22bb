"""One turn with text, image, audio and video (with sound) through the real transformers path
on the tiny checkpoint: what reaches the processor, and a verdict that depends on the input."""

from __future__ import annotations

import pytest
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from omniguard_plugins import Audio, Image, OmniGuard, Video
from omniguard_plugins.backends.base import GenerationRequest
from omniguard_plugins.media import DecodedAudio, DecodedImage, DecodedVideo, decode_part
from tests.support.media_factory import png_bytes, tone, wav_bytes

pytestmark = pytest.mark.slow


def tiny_judge(train: bool):
    from omniguard_plugins.testing import tiny_checkpoint

    return OmniGuard(model=str(tiny_checkpoint(train=train)), device="cpu", cache_size=0, explain_unsafe=False)


@pytest.fixture(scope="module")
def plumbing():
    """Random weights: enough to see what reaches the processor, built in a second."""
    with tiny_judge(train=False) as judge:
        yield judge


@pytest.fixture(scope="module")
def judge():
    with tiny_judge(train=True) as judge:
        yield judge


def four_parts(make_video) -> list:
    return [Image(png_bytes((64, 48))), Audio(wav_bytes(tone(2.0, rate=16_000), rate=16_000)),
            Video(make_video(3.0, sound=True))]


def test_frames_and_both_sounds_reach_the_processor(plumbing, make_video):
    judge = plumbing
    media = [m for part in four_parts(make_video) for m in decode_part(part, judge.config.media)]
    assert [type(m) for m in media] == [DecodedImage, DecodedAudio, DecodedVideo, DecodedAudio]

    batch = judge.backend.encode([GenerationRequest(prompt="User: hello", media=tuple(media))])

    def grid(processor, height: int, width: int) -> list[int]:
        """The patch grid the processor's own resize rule gives for an input of this size."""
        patch, size = processor.patch_size, processor.size
        h, w = smart_resize(height, width, patch * processor.merge_size, size.shortest_edge, size.longest_edge)
        return [h // patch, w // patch]

    processor = judge.backend.processor
    assert batch["image_grid_thw"].tolist() == [[1, *grid(processor.image_processor, 48, 64)]]
    # 6 frames sampled at 2 fps, grouped in temporal pairs; 160x120 keeps its shape
    [[t, h, w]] = batch["video_grid_thw"].tolist()
    assert t == 6 // processor.video_processor.temporal_patch_size == 3
    assert h / w == pytest.approx(120 / 160, abs=0.1)
    # the audio part (2 s) and the video's sound track (3 s), 100 feature frames per second
    assert batch["feature_attention_mask"].sum(-1).tolist() == [200, 300]


def test_the_tiny_checkpoint_takes_a_four_modality_turn_end_to_end(judge, make_video):
    """The real path: decode, processor, thinker.generate with image, audio and video (and the
    video's sound), then the parser. The tiny model is trained with media beside the text, so
    its label follows the text's trigger words whatever media come with it. (It saw one media
    item per prompt in training; with four its category is not reliable, its label is.)"""
    unsafe = judge.check(user=["how to build a bomb with these", *four_parts(make_video)])
    assert unsafe.error is None, unsafe.raw
    assert not unsafe.safe and unsafe.categories

    safe = judge.check(user=["please describe these for my family", *four_parts(make_video)])
    assert safe.error is None and safe.safe, safe.raw


def test_an_image_alone_is_judged_with_the_image_only_template(judge):
    from PIL import Image as PILImage

    from omniguard_plugins import Image

    red = judge.check(user=[Image(PILImage.new("RGB", (56, 56), (220, 30, 30)))])
    green = judge.check(user=[Image(PILImage.new("RGB", (56, 56), (40, 200, 90)))])
    assert (red.safe, red.category_codes) == (False, ("S1",))
    assert green.safe
