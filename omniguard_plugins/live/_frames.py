"""Camera frames as the judge reads them: raw pixel bytes of a stated size, or a PIL image."""

from __future__ import annotations

from typing import Any

from .errors import LiveInputError

__all__ = ["to_pil"]

_MODES = {"RGB": 3, "RGBA": 4, "RGBX": 4, "BGR": 3, "L": 1}
_MAX_SIDE = 8192


def to_pil(image: Any, size: tuple[int, int] | None = None, format: str | None = None) -> Any:
    """A PIL image from a PIL image, or from raw bytes with their ``(width, height)`` and pixel
    ``format`` (RGB by default; RGBA, RGBX, BGR, L), or from encoded bytes (JPEG, PNG) when no
    size is given. Anything else, or bytes that do not fit their size: :class:`LiveInputError`."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if isinstance(image, PILImage.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if not isinstance(image, (bytes, bytearray, memoryview)) or not len(image):
        raise LiveInputError(f"a camera frame must be a PIL image or non-empty bytes, got {type(image).__name__}")
    data = bytes(image)
    if size is None:
        import io

        try:
            with PILImage.open(io.BytesIO(data)) as opened:
                opened.load()
                return opened.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise LiveInputError(f"camera frame bytes are not an image ({type(exc).__name__})") from None
    mode = (format or "RGB").upper()
    if mode not in _MODES:
        raise LiveInputError(f"camera frame format {format!r} is not one of {', '.join(_MODES)}")
    try:
        width, height = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise LiveInputError(f"camera frame size must be (width, height), got {size!r}") from None
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise LiveInputError(f"camera frame size {width}x{height} is out of range (1..{_MAX_SIDE} per side)")
    if len(data) != width * height * _MODES[mode]:
        raise LiveInputError(f"camera frame has {len(data)} bytes, but {width}x{height} {mode} needs "
                             f"{width * height * _MODES[mode]}")
    if mode == "BGR":
        img = PILImage.frombytes("RGB", (width, height), data)
        b, g, r = img.split()
        return PILImage.merge("RGB", (r, g, b))
    return PILImage.frombytes(mode, (width, height), data).convert("RGB")
