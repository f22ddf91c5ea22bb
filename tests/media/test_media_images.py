"""Images, hardened: bombs refused unread, EXIF orientation, every mode normalised, pixel budget."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFile

from omniguard_plugins import CorruptMedia, Image, MediaTooLarge
from omniguard_plugins.media import DecodedImage, MediaLimits, decode_part
from tests.support.media_factory import jpeg_bytes, png_bytes, png_claiming

LIMITS = MediaLimits()


def decode(data, limits: MediaLimits = LIMITS) -> PILImage.Image:
    [decoded] = decode_part(Image(data), limits)
    assert isinstance(decoded, DecodedImage) and decoded.image.mode == "RGB"
    return decoded.image


def saved(img: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_a_png_claiming_100000_by_100000_is_refused_before_any_pixel_is_decoded(monkeypatch):
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self))

    started = time.perf_counter()
    with pytest.raises(MediaTooLarge, match="too many pixels"):
        decode(bomb)
    assert time.perf_counter() - started < 1.0
    assert loads == []  # refused from the header alone


def test_an_image_over_our_own_pixel_limit_is_refused_from_its_header():
    with pytest.raises(MediaTooLarge, match="200x100 is over the 10000-pixel limit"):
        decode(png_claiming(200, 100), MediaLimits(max_image_pixels=10_000))


def test_exif_orientation_is_applied():
    img = PILImage.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    upright = decode(saved(img, "JPEG", exif=exif, quality=95))

    assert upright.size == (20, 40)
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda: PILImage.new("RGBA", (8, 8), (255, 0, 0, 0)), (255, 255, 255),
                     id="transparent RGBA on white"),
        pytest.param(lambda: PILImage.new("RGBA", (8, 8), (0, 0, 255, 255)), (0, 0, 255), id="opaque RGBA"),
        pytest.param(lambda: PILImage.new("LA", (8, 8), (0, 0)), (255, 255, 255), id="transparent LA"),
        pytest.param(lambda: PILImage.new("L", (8, 8), 77), (77, 77, 77), id="grayscale"),
        pytest.param(lambda: PILImage.new("1", (8, 8), 1), (255, 255, 255), id="1-bit"),
        pytest.param(lambda: PILImage.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=PILImage.Palette.ADAPTIVE),
                     (10, 200, 30), id="palette"),
    ],
)
def test_every_png_mode_becomes_rgb(make, expected):
    assert decode(saved(make(), "PNG")).getpixel((4, 4)) == expected


def test_a_palette_image_with_a_transparent_index_is_composited_on_white():
    img = PILImage.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))
    out = decode(saved(img, "PNG", transparency=0))
    assert out.getpixel((1, 1)) == (255, 0, 0) and out.getpixel((6, 6)) == (255, 255, 255)


def test_sixteen_bit_grayscale_keeps_its_brightness():
    arr = np.full((8, 8), 65535, np.uint16)
    arr[:, 4:] = 32768
    img = PILImage.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = decode(saved(img, "PNG"))
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((6, 1))[0] == pytest.approx(128, abs=1)


def test_cmyk_jpeg_becomes_rgb():
    out = decode(saved(PILImage.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    r, g, b = out.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


def test_a_large_image_is_downscaled_to_the_pixel_budget_keeping_its_shape():
    out = decode(jpeg_bytes((3000, 1500)), MediaLimits(image_pixel_budget=500_000))
    assert out.width * out.height <= 500_000
    assert out.width / out.height == pytest.approx(2.0, rel=0.01)


def test_a_sliver_is_padded_so_the_vision_processor_accepts_it():
    out = decode(png_bytes((3000, 4)))
    assert max(out.size) / min(out.size) <= 150


def test_a_pil_image_is_normalised_too():
    [decoded] = decode_part(Image(PILImage.new("RGBA", (4, 4), (0, 0, 0, 0))), LIMITS)
    assert decoded.image.mode == "RGB" and decoded.image.getpixel((0, 0)) == (255, 255, 255)


def test_a_multi_page_tiff_gives_its_first_page():
    pages = [PILImage.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0)]]
    assert decode(saved(pages[0], "TIFF", save_all=True, append_images=pages[1:])).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "EPS"])
def test_formats_outside_the_chat_image_set_are_refused_unread(fmt):
    img = PILImage.new("RGB", (16, 16), (1, 2, 3))
    try:
        data = saved(img, fmt)
    except OSError:  # pragma: no cover - EPS needs ghostscript to *write*; fake its header
        data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n"
    with pytest.raises(CorruptMedia, match="not a readable image"):
        decode(data)
