"""The tiny checkpoint's rule for a lone image, as its banner and docstrings state it: unsafe
(S1) when the image is mostly red, safe when it is clearly another colour (issue 13: blue,
navy, purple and black ones used to be unsafe too). Judged through the real path, image only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from omniguard_plugins import Image
from omniguard_plugins.media import MediaLimits, decode_part
from omniguard_plugins.testing import is_mostly_red

pytestmark = pytest.mark.slow

UNSAFE = {"red": (255, 0, 0), "dark-ish red": (200, 30, 30), "crimson": (200, 40, 60)}
SAFE = {
    "blue": (0, 0, 255), "navy": (0, 0, 128), "purple": (128, 0, 128), "black": (0, 0, 0),
    "green": (40, 200, 90), "white": (255, 255, 255), "magenta": (255, 0, 255), "orange": (255, 140, 0),
    "yellow": (255, 230, 0), "pink": (255, 150, 150), "maroon": (110, 0, 0), "grey": (128, 128, 128),
}
SIZES = [(28, 28), (84, 28), (224, 224)]


def _textured(base: tuple[int, int, int], size: tuple[int, int], seed: int) -> PILImage.Image:
    """A solid colour with photo-like grain and a small off-colour patch (1/16 of it) in the
    middle (not in the top-left corner: see the tiny recipe's docstring)."""
    w, h = size
    rng = np.random.RandomState(seed)
    pixels = np.full((h, w, 3), base, dtype=float) + rng.normal(0, 20, (h, w, 3))
    pixels[3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8] = (255, 255, 255)
    return PILImage.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _cases() -> list[tuple[str, PILImage.Image, bool]]:
    cases = []
    for size in SIZES:
        for name, rgb in {**UNSAFE, **SAFE}.items():
            cases.append((f"{name} {size}", PILImage.new("RGB", size, rgb), name in UNSAFE))
    cases += [
        ("textured red", _textured((220, 30, 30), (112, 84), 0), True),
        ("textured blue", _textured((30, 30, 220), (112, 84), 1), False),
        ("textured navy", _textured((10, 10, 120), (112, 84), 2), False),
        ("noise", PILImage.fromarray(np.random.RandomState(3).randint(0, 256, (84, 112, 3)).astype(np.uint8)), False),
    ]
    return cases


def test_a_lone_image_is_unsafe_when_mostly_red_and_only_then(tiny_judge) -> None:
    cases = _cases()
    verdicts = []
    for start in range(0, len(cases), 32):  # within the judge's queue bound
        verdicts += tiny_judge.check_many([{"user": [Image(img)]} for _, img, _ in cases[start : start + 32]])
    assert all(v.error is None for v in verdicts)
    got = {name: (v.safe, v.category_codes) for (name, _, _), v in zip(cases, verdicts)}
    want = {name: (not unsafe, ("S1",) if unsafe else ()) for name, _, unsafe in cases}
    assert got == want


def test_the_scripted_stand_in_states_the_same_rule() -> None:
    # keyword_handler(red_images=True) and the tiny checkpoint must tell the same colours apart
    for name, img, unsafe in _cases():
        (decoded,) = decode_part(Image(img), MediaLimits())
        assert is_mostly_red(decoded) is unsafe, name
