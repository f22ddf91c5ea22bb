"""The hostile-input table: each input gives its typed error fast, and through the judge a
blocking verdict naming the part, after which the judge serves the next request as usual."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from omniguard_plugins import (
    Audio,
    CorruptMedia,
    Image,
    MediaError,
    MediaFetchRefused,
    MediaTooLarge,
    UnsupportedMedia,
    Video,
)
from omniguard_plugins.media import MediaLimits, decode_part
from omniguard_plugins.testing import scripted_judge
from tests.support.media_factory import jpeg_bytes, png_bytes, png_claiming

PNG = png_bytes((32, 32))
JPEG = jpeg_bytes((320, 240))


@dataclass
class Media:
    mp3: bytes
    mp4: bytes
    tmp: Path

    def file(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


CASES: list[tuple[str, Callable[[Media], Any], bool, type[MediaError]]] = [
    ("truncated PNG", lambda m: Image(half(PNG)), False, CorruptMedia),
    ("truncated JPEG", lambda m: Image(half(JPEG)), False, CorruptMedia),
    ("truncated MP3", lambda m: Audio(half(m.mp3)), False, CorruptMedia),
    ("truncated MP4", lambda m: Video(half(m.mp4)), False, CorruptMedia),
    ("zero-byte image file", lambda m: Image(m.file("empty.png", b"")), False, CorruptMedia),
    ("zero-byte audio file", lambda m: Audio(m.file("empty.wav", b"")), False, CorruptMedia),
    ("zero-byte video bytes", lambda m: Video(b""), False, CorruptMedia),
    ("PNG named .mp3, passed as audio", lambda m: Audio(m.file("voice.mp3", PNG)), False, UnsupportedMedia),
    ("MP3 named .png, passed as image", lambda m: Image(m.file("photo.png", m.mp3)), False, UnsupportedMedia),
    ("PNG header claiming 100000x100000", lambda m: Image(png_claiming(100_000, 100_000)), False, MediaTooLarge),
    ("invalid base64", lambda m: Image("iVBORw0KGgoAAAANSUhEUg" + "*" * 64), False, CorruptMedia),
    ("data: URI with the wrong MIME", lambda m: Image("data:audio/mpeg;base64," + base64.b64encode(PNG).decode()),
     False, UnsupportedMedia),
    ("URL while URLs are off", lambda m: Image("https://example.com/cat.png"), False, MediaFetchRefused),
    ("URL to 127.0.0.1", lambda m: Image("http://127.0.0.1:8080/cat.png"), True, MediaFetchRefused),
    ("URL to 169.254.169.254", lambda m: Video("http://169.254.169.254/latest/meta-data/"), True, MediaFetchRefused),
    ("polyglot PNG+MP4 passed as video", lambda m: Video(PNG + m.mp4), False, UnsupportedMedia),
    ("random bytes as audio", lambda m: Audio(bytes(range(256)) * 8), False, UnsupportedMedia),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def media(encode_audio, make_video, tmp_path_factory) -> Media:
    return Media(encode_audio("mp3", 3.0), make_video(2.0, sound=True), tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize(("name", "make", "urls_on", "error"), CASES, ids=IDS)
def test_each_hostile_input_gives_its_typed_error_within_a_second(media, name, make, urls_on, error):
    part = make(media)
    started = time.perf_counter()
    with pytest.raises(error) as info:
        decode_part(part, MediaLimits(allow_urls=urls_on))
    assert time.perf_counter() - started < 1.0  # a bound on hanging, not a benchmark
    assert "\n" not in str(info.value) and len(str(info.value)) < 200  # one line, not ffmpeg's log


@pytest.fixture(scope="module")
def judges():
    return {on: scripted_judge({"bomb": "S9"}, allow_urls=on, cache_size=0) for on in (False, True)}


@pytest.mark.parametrize(("name", "make", "urls_on", "error"), CASES, ids=IDS)
def test_through_the_judge_each_blocks_with_its_reason_and_the_judge_serves_on(judges, media, name, make, urls_on,
                                                                             error):
    judge = judges[urls_on]
    part = make(media)
    calls = judge.backend.calls

    verdict = judge.check(user=["please look at this", Image(PNG), part])

    assert verdict.unsafe and verdict.label == "error"
    label = f"{part.kind} #2" if part.kind == "image" else f"{part.kind} #1"
    assert verdict.error.startswith(f"{error.kind}: {label}: ")
    assert judge.backend.calls == calls  # nothing reached the model

    assert judge.check(user="and now, just a question").safe  # the next request is served
    assert judge.check(user="how do I build a bomb").unsafe
    assert judge.backend.calls == calls + 2
