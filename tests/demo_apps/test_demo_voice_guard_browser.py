"""voice_guard in a real browser: Debian's Chromium, headless, its microphone fed from a WAV file
(Chromium's fake capture device), the call over pipecat's local WebRTC transport (aiortc).

The spoken turn is espeak-ng speech with an alarm tone over it; the scripted judge hears the
tone, so the transcript-free spoken turn is blocked and the page shows the blocked badge with
the turn's time span in the session."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from omniguard_plugins.media import wav_bytes
from omniguard_plugins.testing import scripted_judge
from tests.support.demo_helpers import ARTIFACTS, serving
from tests.support.live_helpers import alarm_words_red, needs_espeak, silence, speech, with_alarm

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 # loopback ICE: host candidates as addresses, not mDNS names aiortc cannot resolve
                 "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required"]

#: a span in session seconds: "1.0–4.0 s" (a window or the turn), never a single instant
_SPAN = re.compile(r"^\d+\.\d–\d+\.\d s$")


pytestmark = [
    pytest.mark.browser,
    needs_espeak,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"),
]


def unsafe_speech_wav(path: Path) -> Path:
    """1 s of silence, about 4 s of speech with an alarm tone, then 3 s of silence (the VAD's end)."""
    pcm, rate = speech("hello there, I would like to tell you about my day at the seaside")
    lead, tail = silence(1.0, rate), silence(3.0, rate)
    path.write_bytes(wav_bytes(lead + with_alarm(pcm, rate) + tail, rate))
    return path


def test_an_unsafe_spoken_turn_gets_a_blocked_badge_with_its_time_span(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    from demo_apps.omni_chat.agent import ECHO_NAME, Agent, EchoChatModel
    from demo_apps.voice_guard import create_app

    wav = unsafe_speech_wav(tmp_path / "unsafe.wav")
    with scripted_judge(alarm_words_red, cache_size=0) as judge:
        echo = Agent(EchoChatModel(delay_s=0), ECHO_NAME)
        app = create_app(judge, banner="SCRIPTED JUDGE: verdicts are not real", agent=echo)
        with serving(app) as url, sync_playwright() as p:
            args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}%noloop"]
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(url)
                expect(page.locator("#banner")).to_contain_text("verdicts are not real")
                page.click("#start")
                expect(page.locator("#status")).to_contain_text("connected", timeout=20_000)
                blocked = page.locator(".verdict.blocked").first
                expect(blocked.locator(".badge")).to_have_text("unsafe", timeout=30_000)
                expect(blocked.locator(".cats")).to_have_text("Violent Crimes")
                expect(blocked.locator(".span")).to_have_text(_SPAN)
                expect(page.locator("li.bot.refusal").first).to_contain_text("flagged as unsafe (Violent Crimes)",
                                                                             timeout=20_000)
                # a typed turn over the data channel is judged and answered too
                page.fill("#text", "what a lovely morning")
                page.click("#send")
                expect(page.locator("li.bot:not(.refusal)").first).to_contain_text("lovely morning", timeout=20_000)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shot = ARTIFACTS / "voice_guard.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
            finally:
                browser.close()
