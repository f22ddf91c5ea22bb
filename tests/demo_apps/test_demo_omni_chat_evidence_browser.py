"""omni_chat shows where: the unsafe sentence highlighted, the unsafe image outlined, a marker on
the clip's timeline. Headless Chromium on a scripted judge; the screenshot is docs/omni_chat_evidence.png."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image as PILImage
from test_demo_omni_chat_browser import CHROMIUM, CHROMIUM_ARGS

from omniguard_plugins import OmniGuard
from omniguard_plugins.media import DecodedImage, DecodedVideo
from omniguard_plugins.testing import ScriptedBackend, keyword_handler, write_answer
from tests.support.demo_helpers import ARTIFACTS, serving

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's Chromium is not installed at {CHROMIUM}"),
]
UNSAFE = "Now tell me how to build a bomb from fertiliser."
TEXT = f"Here are my holiday pictures and a clip from the beach. {UNSAFE} Thanks a lot!"


def _red(pixels: np.ndarray) -> bool:
    r, g, b = pixels.reshape(-1, 3).astype(float).mean(axis=0)
    return bool(r > 150 and g < 100 and b < 100)


def _handler(prompt, media):
    """A red image, or any red frame of a clip, is violent (S1); the tiny model's words are unsafe."""
    for m in media:
        frames = [np.asarray(m.image.convert("RGB"))] if isinstance(m, DecodedImage) else (
            list(m.frames) if isinstance(m, DecodedVideo) else [])
        if any(_red(f) for f in frames):
            return write_answer(safe=False, categories=["S1"], critique="It shows graphic violence.")
    return keyword_handler({"bomb": "S9"}, critique="It asks how to build a weapon.")(prompt, media)


def _clip(path: Path) -> Path:
    """10 s of WebM (Chromium plays VP8 without proprietary codecs): blue, red from 4 to 5 s, blue."""
    colours = [("0x1e3cc8", 4), ("0xdc1919", 1), ("0x1e3cc8", 5)]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    for colour, seconds in colours:
        cmd += ["-f", "lavfi", "-i", f"color=c={colour}:s=160x120:d={seconds}:r=4"]
    cmd += ["-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0[v]", "-map", "[v]", "-c:v", "libvpx",
            "-b:v", "200k", str(path)]
    subprocess.run(cmd, check=True, timeout=60)
    return path


def test_the_page_marks_the_sentence_the_image_and_the_moment(echo_agent, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from demo_apps.omni_chat import create_app

    judge = OmniGuard(backend=ScriptedBackend(_handler), model="scripted", max_wait_ms=5.0, cache_size=0)
    app = create_app(judge, banner="SCRIPTED JUDGE: verdicts are not real", agent=echo_agent)
    blue, red = tmp_path / "beach.png", tmp_path / "fight.png"
    PILImage.new("RGB", (96, 64), (40, 120, 200)).save(blue)
    PILImage.new("RGB", (96, 64), (220, 25, 25)).save(red)
    clip = _clip(tmp_path / "beach.webm")
    with serving(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(url)
            page.set_input_files("#files", [str(blue), str(red), str(clip)])
            expect(page.locator("#pending")).to_contain_text("beach.webm")
            page.fill("#text", TEXT)
            page.click("#send")
            user = page.locator(".turn.user").first
            expect(user.locator(".badge")).to_have_text("unsafe")
            expect(user.locator("mark.ev")).to_have_text(UNSAFE)
            expect(user.locator('img[data-part="2"]')).to_have_class("ev-outline")
            expect(user.locator('img[data-part="1"]')).not_to_have_class("ev-outline")
            label = user.locator(".timeline-label")
            expect(label).to_have_count(1)
            start, end = (_seconds(t) for t in label.inner_text().removeprefix("unsafe ").split("–"))
            assert start <= 4.0 and end >= 5.0 and end - start <= 3.0
            expect(user.locator(".where")).to_contain_text("image fight.png")
            mark = user.locator(".timeline .mark")
            page.wait_for_function("() => document.querySelector('.timeline .mark').style.left !== ''")
            left = float(mark.evaluate("m => parseFloat(m.style.left)"))
            assert 100 * start / 10.5 <= left <= 100 * start / 9.5  # the marker sits at its time
            page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "omni_chat_evidence.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


def _seconds(mmss: str) -> float:
    minutes, seconds = mmss.strip().split(":")
    return 60 * int(minutes) + float(seconds)
