"""Image decoding, hardened: size checked from the header before any pixel is decoded, EXIF
orientation applied, every mode normalised to RGB, a pixel budget, animations as short videos."""

from __future__ import annotations

import bisect
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptMedia, MediaError, MediaTooLarge
from .frames import even_frames, sample_times
from .types import DecodedImage, DecodedMedia, DecodedVideo, MediaLimits

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "IMAGE_FORMATS", "animated_image_to_video", "decode_image_bytes", "decode_pil", "first_line", "fit_pixels",
    "open_image", "pil_errors", "to_rgb",
]


def decode_pil(img: PILImage.Image, limits: MediaLimits) -> DecodedImage:
    if img.width * img.height > limits.max_image_pixels:
        raise MediaTooLarge(f"{img.width}x{img.height} is over the {limits.max_image_pixels}-pixel limit")
    from PIL import ImageOps

    rgb = to_rgb(ImageOps.exif_transpose(img) or img)
    digest = hashlib.sha256(rgb.tobytes() + f"{rgb.size}".encode()).hexdigest()
    return DecodedImage(fit_pixels(rgb, limits.image_pixel_budget), digest)


#: the image formats Pillow may open (phone JPEGs open as MPO); EPS, PSD, ICO... are refused unread
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")


@contextmanager
def pil_errors(what: str = "image") -> Iterator[None]:
    """Pillow's many exception types, as our typed one-line errors."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        yield
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise CorruptMedia("not a readable image (png, jpeg, gif, webp, bmp, tiff)") from None
    except PILImage.DecompressionBombError:
        raise MediaTooLarge("image header claims too many pixels (a decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptMedia(f"{what} does not decode ({first_line(exc)})") from None


def open_image(data: bytes) -> PILImage.Image:
    """Open (not decode) an image from its header, in the formats we accept only."""
    from PIL import Image as PILImage

    with pil_errors():
        PILImage.init()
        return PILImage.open(io.BytesIO(data), formats=[f for f in IMAGE_FORMATS if f in PILImage.OPEN])


def decode_image_bytes(data: bytes, digest: str, limits: MediaLimits) -> list[DecodedMedia]:
    from PIL import ImageOps

    with open_image(data) as img, pil_errors():
        (width, height), fmt = img.size, img.format
        # the header's size is checked before a single pixel is decoded
        if width * height > limits.max_image_pixels:
            raise MediaTooLarge(f"{width}x{height} is over the {limits.max_image_pixels}-pixel limit")
        if getattr(img, "n_frames", 1) > 1 and fmt in ("GIF", "WEBP", "PNG"):
            return [animated_image_to_video(data, digest, limits)]
        if fmt == "JPEG":  # let libjpeg decode at a reduced scale when we downscale anyway
            scale = min(1.0, (limits.image_pixel_budget / (width * height)) ** 0.5)
            img.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        img.load()
        rgb = to_rgb(ImageOps.exif_transpose(img) or img)
    return [DecodedImage(fit_pixels(rgb, limits.image_pixel_budget), digest)]


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    from PIL import Image as PILImage

    if img.mode.startswith("I") or img.mode == "F":
        import numpy as np

        # 16-bit samples keep their brightness (65535 -> 255); data with no fixed range stretch
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        full = 65535.0 if img.mode.startswith("I;16") or 255 < peak <= 65535 else 255.0
        full = max(peak, 1.0) if img.mode == "F" or peak > 65535 else full
        img = PILImage.fromarray((arr / full * 255.0).clip(0, 255).astype("uint8"), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = PILImage.new("RGBA", img.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


#: Qwen's vision processor refuses aspect ratios past 200:1; thinner images are padded to this
MAX_ASPECT = 150


def fit_pixels(img: PILImage.Image, budget: int) -> PILImage.Image:
    """Pad a sliver to MAX_ASPECT, then downscale to at most ``budget`` pixels."""
    from PIL import Image as PILImage

    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        side = -(-max(w, h) // MAX_ASPECT)
        canvas = PILImage.new("RGB", (max(w, side), max(h, side)), (255, 255, 255))
        canvas.paste(img)
        img, (w, h) = canvas, canvas.size
    if w * h <= budget:
        return img
    scale = (budget / (w * h)) ** 0.5
    return img.resize((max(1, int(w * scale)), max(1, int(h * scale))), PILImage.Resampling.BICUBIC)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__


#: an animated image may hold at most this many times max_image_pixels over all its frames
_ANIMATION_PIXEL_FACTOR = 16


def animated_image_to_video(data: bytes, digest: str, limits: MediaLimits) -> DecodedVideo:
    """An animated GIF/WebP/APNG as a short video, sampled like one."""
    with open_image(data) as img:
        n, (w, h) = getattr(img, "n_frames", 1), img.size
        if n * w * h > _ANIMATION_PIXEL_FACTOR * limits.max_image_pixels:
            raise MediaTooLarge(f"{n} frames of {w}x{h} is too many pixels for an animation")
        with pil_errors("animation"):
            starts, total = [], 0.0
            for i in range(n):
                img.seek(i)
                starts.append(total)
                if "duration" not in img.info:
                    img.load()  # WebP knows a frame's duration only once it is decoded
                ms = img.info.get("duration") or 0
                total += (ms if ms >= 20 else 100) / 1000.0  # browsers show 0-10 ms frames for 100 ms
            if total > limits.max_video_s:
                raise MediaTooLarge(f"the animation runs {total:.0f} s, over the {limits.max_video_s:g}-second limit")
            times, fps = sample_times(total, limits)
            frames = []
            for t in times:
                img.seek(max(0, bisect.bisect_right(starts, t) - 1))
                img.load()
                frames.append(np.asarray(fit_pixels(to_rgb(img), limits.video_pixel_budget), dtype=np.uint8))
    return DecodedVideo(even_frames(frames), fps, digest)
