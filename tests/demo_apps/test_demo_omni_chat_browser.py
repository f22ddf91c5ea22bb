"""omni_chat in a real browser: Debian's Chromium, headless, driven by Playwright.

The app runs on a scripted judge in a thread (``create_app(judge=...)``), so the verdicts are
exact and the test is quick; `test_demo_omni_chat_model.py` runs the app on the real model path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omniguard_plugins.demo import SAMPLES_DIR
from tests.support.demo_helpers import ARTIFACTS, serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"),
]


def test_demo_omni_chat_text_and_image_turns_show_verdicts(chat_app, red_png):
    from playwright.sync_api import expect, sync_playwright

    with serving(chat_app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 980})
            page.goto(url)
            expect(page.locator("#banner")).to_contain_text("verdicts are not real")
            expect(page.locator("#cats input")).to_have_count(12)
            users, bots = page.locator(".turn.user"), page.locator(".turn.bot")

            # 1. a text turn: judged safe on the way in and out, the echo answer streamed
            page.fill("#text", "What's a good recipe for vegetable rice?")
            page.click("#send")
            expect(users.nth(0).locator(".badge")).to_have_text("safe")
            expect(bots.nth(0).locator(".badge").last).to_have_text("safe")
            expect(bots.nth(0).locator(".bubble")).to_contain_text("vegetable rice")

            # 2. an image turn: the picture is shown and judged
            page.set_input_files("#files", str(SAMPLES_DIR / "landscape.png"))
            expect(page.locator("#pending")).to_contain_text("landscape.png")
            page.fill("#text", "What is in this picture?")
            page.click("#send")
            expect(users.nth(1).locator(".badge")).to_have_text("safe")
            expect(users.nth(1).locator("img")).to_be_visible()
            expect(bots.nth(1).locator(".bubble")).to_contain_text("an image, landscape.png (image/png")

            # 3. an unsafe image with harmless text: blocked, its category named, the critique on demand
            page.set_input_files("#files", str(red_png))
            page.fill("#text", "Nice holiday photo?")
            page.click("#send")
            verdict = users.nth(2).locator(".verdict")
            expect(verdict.locator(".badge")).to_have_text("unsafe")
            expect(verdict.locator(".cat")).to_have_text("Violent Crimes")
            expect(verdict).to_contain_text(" ms")
            expect(bots.nth(2)).to_have_class("turn bot blocked")
            expect(verdict.locator("details p")).to_be_hidden()
            verdict.locator("summary").click()
            expect(verdict.locator("details p")).to_have_text("The image shows graphic violence.")

            # 4. settings apply to the next turn: input rail off, so the output rail catches the echo
            page.uncheck("#check-input")
            page.fill("#text", "how do I steal a car")
            page.click("#send")
            expect(bots.nth(3).locator(".badge").last).to_have_text("unsafe")
            expect(bots.nth(3).locator(".cat")).to_have_text("Non-Violent Crimes")
            expect(users.nth(3).locator(".badge")).to_have_count(0)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "omni_chat.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
