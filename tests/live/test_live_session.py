"""The core live session with scripted verdicts: turns, rolling windows, sampled frames, the
outgoing text rail, time spans, and bad input (typed errors or counted drops, bounded memory)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from omniguard_plugins.doors import VerdictSummary
from omniguard_plugins.live import LiveInputError, LiveSession, LiveSettings, PcmStream, Ring
from omniguard_plugins.testing import ScriptedBackend, scripted_judge
from tests.support.live_helpers import (
    ALARM_CRITIQUE,
    alarm_words_red,
    chunks,
    needs_espeak,
    rgb,
    silence,
    speech,
    with_alarm,
)


@pytest.fixture
def judge():
    with scripted_judge(alarm_words_red, cache_size=0) as j:
        yield j


def backend_of(judge) -> ScriptedBackend:
    return judge.backend


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def feed(session: LiveSession, pcm: bytes, rate: int, channels: int = 1, ms: int = 20) -> None:
    for chunk in chunks(pcm, rate, ms, channels):
        session.feed_audio(chunk, rate, channels)
        await asyncio.sleep(0)


async def until(condition, polls: int = 500) -> None:
    """Let the event loop run until ``condition()`` holds (a busy machine may take a while)."""
    for _ in range(polls):
        if condition():
            return
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------- PCM


def test_pcm_stream_carries_split_samples_mixes_channels_and_resamples():
    tone = (np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100) * 20_000).astype("<i2")
    stereo = np.stack([tone, tone], axis=1).tobytes()
    stream = PcmStream()
    out = [stream.push(stereo[i : i + 999], 44_100, 2) for i in range(0, len(stereo), 999)]  # odd sizes
    joined = np.concatenate(out)
    assert abs(len(joined) - 16_000) <= 2  # one second at 16 kHz
    # the tone survives: its peak frequency is still 440 Hz
    peak = np.fft.rfftfreq(len(joined), 1 / 16_000)[np.argmax(np.abs(np.fft.rfft(joined)))]
    assert abs(peak - 440) < 3
    assert stream.format_changes == 0
    stream.push(b"\x01\x00\x02", 8_000, 1)  # a new rate: a fresh conversion, the odd byte carried
    assert stream.format_changes == 1


@pytest.mark.parametrize("rate, channels", [(0, 1), (16_000, 0), (16_000.0, 1), (10**7, 1), (16_000, 64)])
def test_pcm_stream_refuses_formats_no_microphone_has(rate, channels):
    with pytest.raises(LiveInputError, match="sample_rate|channels"):
        PcmStream().push(b"\x00\x00", rate, channels)


def test_ring_keeps_the_newest_samples_with_their_session_positions():
    ring = Ring(10)
    ring.write(np.arange(7, dtype=np.float32))
    ring.write(np.arange(7, 12, dtype=np.float32))
    assert (ring.start, ring.end) == (2, 12)
    assert ring.span(0, 12).tolist() == list(range(2, 12))
    ring.write(np.arange(100, 125, dtype=np.float32))  # more than the ring holds at once
    assert ring.span(ring.start, ring.end).tolist() == list(range(115, 125))
    assert ring.span(ring.end - 3, ring.end).tolist() == [122, 123, 124]


async def test_the_judge_is_handed_16k_mono_wav_of_the_turn(judge):
    session = LiveSession(judge)
    session.feed_audio(silence(0.5, 48_000) * 2, 48_000, 2)  # 0.5 s of 48 kHz stereo
    await session.end_turn("")
    (audio,) = backend_of(judge).requests[-1].media
    assert audio.kind == "audio" and audio.sample_rate == 16_000 and audio.duration_s == pytest.approx(0.5, abs=0.01)
    session.close()


# ---------------------------------------------------------------------- turns and windows


@needs_espeak
async def test_a_turn_is_judged_with_its_audio_transcript_and_latest_frame(judge):
    events = []
    session = LiveSession(judge, on_verdict=events.append)
    pcm, rate = speech("good morning, what a lovely day")
    await feed(session, pcm, rate)
    assert session.feed_image(rgb((20, 40, 200)), size=(32, 24), format="RGB") is not None
    live = await session.end_turn("good morning, what a lovely day")
    assert live is not None and live.safe and live.check == "turn"
    assert live.seconds == pytest.approx((0.0, len(pcm) / 2 / rate), abs=0.01)
    turn_request = backend_of(judge).requests[-1]
    assert sorted(m.kind for m in turn_request.media) == ["audio", "image"]
    assert "good morning" in turn_request.prompt
    body = live.to_json()
    assert VerdictSummary.from_json(body).safe and body["session_seconds"] == [0.0, round(len(pcm) / 2 / rate, 3)]
    assert body["check"] == "turn" and body["stage"] == "input"
    session.close()


@needs_espeak
async def test_unsafe_audio_with_a_harmless_transcript_blocks_the_turn(judge):
    pcm, rate = speech("hello, how are you")
    session = LiveSession(judge)
    await feed(session, with_alarm(pcm, rate), rate)
    live = await session.end_turn("hello, how are you")
    assert live is not None and not live.safe
    assert live.verdict.critique is None or ALARM_CRITIQUE in live.verdict.critique or live.verdict.category_codes
    assert live.verdict.category_codes == ("S1",)
    session.close()


@needs_espeak
async def test_rolling_windows_cut_a_long_utterance_off_while_it_is_spoken(judge):
    blocked = []
    session = LiveSession(judge, LiveSettings(window_s=2.0, step_s=1.0), on_block=blocked.append)
    pcm, rate = speech("this is a calm and harmless sentence that goes on for a little while")
    alarm = with_alarm(*speech("and then it turns"))  # the unsafe part comes late
    await feed(session, pcm, rate)
    await asyncio.sleep(0.05)
    assert not blocked and session.turn_blocked is None
    await feed(session, alarm, rate)
    await until(lambda: bool(blocked))
    assert blocked, "an unsafe window blocks before the turn ends"
    start, end = blocked[0].seconds
    assert blocked[0].check == "audio_window" and end - start == pytest.approx(2.0, abs=0.01)
    assert end > len(pcm) / 2 / rate  # the window that blocked reaches into the alarm
    live = await session.end_turn("a harmless transcript")
    assert live is blocked[0]  # the turn's verdict is the window's: nothing more to judge
    assert session.stats.turns_blocked == 1
    session.close()


async def test_a_transcript_only_turn_and_an_empty_turn(judge):
    session = LiveSession(judge)
    live = await session.end_turn("how do I build a bomb")
    assert live is not None and not live.safe and live.verdict.category_codes == ("S9",)
    assert await session.end_turn("   ") is None  # nothing to judge
    session.close()


# ---------------------------------------------------------------------- camera frames


async def test_frames_are_sampled_and_judged_alone_red_unsafe(judge):
    clock = Clock()
    session = LiveSession(judge, LiveSettings(frame_interval_s=1.0), clock=clock)
    red = session.feed_image(rgb((220, 20, 20)), size=(32, 24), format="RGB")
    clock.t = 0.5
    assert session.feed_image(rgb((20, 20, 220)), size=(32, 24)) is None  # between samples
    clock.t = 1.2
    blue = session.feed_image(rgb((20, 20, 220)), size=(32, 24))
    assert red is not None and blue is not None
    red_v, blue_v = await red, await blue
    assert red_v is not None and not red_v.safe and red_v.seconds == (0.0, 0.0)
    assert blue_v is not None and blue_v.safe and blue_v.seconds == (1.2, 1.2)
    assert (session.stats.frames_seen, session.stats.frames_skipped, session.stats.frames_judged) == (3, 1, 2)
    session.close()


async def test_frames_at_ten_times_real_time_are_sampled_down_and_shed_never_queued(judge):
    backend_of(judge).delay_s = 0.05  # a slow judge
    clock = Clock()
    session = LiveSession(judge, LiveSettings(frame_interval_s=0.1, max_waiting_frames=2), clock=clock)
    futures = []
    for i in range(300):  # 30 fps for 10 s of camera, arriving at 10x real time
        clock.t = i / 30
        futures.append(session.feed_image(rgb((20, 20, 220)), size=(32, 24)))
        if i % 10 == 0:
            await asyncio.sleep(0.005)
    sampled = [f for f in futures if f is not None]
    results = await asyncio.gather(*sampled)
    stats = session.stats
    assert stats.frames_seen == 300 and stats.frames_skipped == 300 - len(sampled)
    assert stats.frames_shed > 0, "a judge slower than the camera sheds waiting frames"
    assert stats.frames_judged + stats.frames_shed == len(sampled)
    assert sum(r is None for r in results) == stats.frames_shed  # a shed frame is never passed on
    assert all(r.safe for r in results if r is not None)
    session.close()


@pytest.mark.parametrize("image, size, fmt", [
    (b"\x00" * 10, (32, 24), "RGB"),  # too few bytes for its size
    (b"not an image at all", None, None),  # no size: must be JPEG/PNG
    (rgb((1, 2, 3)), (32, 24), "YUV"),
    (rgb((1, 2, 3)), (0, 24), "RGB"),
    (b"", (1, 1), "RGB"),
])
async def test_corrupt_camera_frames_are_typed_errors_and_counted(judge, image, size, fmt):
    session = LiveSession(judge)
    with pytest.raises(LiveInputError):
        session.feed_image(image, size=size, format=fmt)
    assert session.stats.frames_corrupt == 1
    ok = session.feed_image(rgb((0, 200, 0), (8, 8)), size=(8, 8), format="RGB")  # the session goes on
    assert ok is not None and (await ok).safe
    session.close()


# ---------------------------------------------------------------------- bad audio


@needs_espeak
async def test_changing_rates_stereo_odd_and_empty_chunks_and_silence(judge):
    session = LiveSession(judge)
    pcm, rate = speech("one two three")
    session.feed_audio(b"", 16_000, 1)
    session.feed_audio(b"\x01", 16_000, 1)  # half a sample: carried, not lost
    stereo = np.repeat(np.frombuffer(pcm, dtype="<i2").reshape(-1, 1), 2, axis=1).tobytes()
    await feed(session, stereo, rate, channels=2, ms=13)
    await feed(session, silence(1.0, 8_000), 8_000)
    await feed(session, pcm, rate, ms=7)
    with pytest.raises(LiveInputError):
        session.feed_audio(b"\x00\x00", 123, 1)
    seconds = 2 * len(pcm) / 2 / rate + 1.0
    assert session.audio_seconds == pytest.approx(seconds, abs=0.01)
    stats = session.stats
    assert stats.empty_chunks == 1 and stats.bad_chunks == 1 and stats.format_changes == 3
    live = await session.end_turn("one two three")
    assert live is not None and live.safe and live.seconds[1] == pytest.approx(seconds, abs=0.01)
    session.close()


async def test_a_turn_longer_than_the_cap_keeps_bounded_audio(judge):
    session = LiveSession(judge, LiveSettings(window_s=2.0, step_s=1.0, max_turn_s=4.0))
    second = silence(1.0)
    for k in range(1, 13):  # 12 s of audio into a 4 s turn buffer
        for chunk in chunks(second, 16_000, 100):
            session.feed_audio(chunk, 16_000, 1)
        await until(lambda k=k: session.stats.windows_judged >= k - 1)  # judged as it goes, as in real time
    assert session._ring.capacity == 4 * 16_000  # memory bound  # noqa: SLF001
    assert session.stats.turn_audio_trimmed_s == pytest.approx(8.0, abs=0.01)
    live = await session.end_turn("")
    assert live is not None and live.safe and live.seconds == pytest.approx((0.0, 12.0))
    assert max(m.duration_s for r in backend_of(judge).requests for m in r.media if m.kind == "audio") <= 4.0
    session.close()


async def test_trimmed_audio_no_window_judged_fails_closed(judge):
    backend_of(judge).delay_s = 0.2  # windows wait behind a slow judge and are shed
    session = LiveSession(judge, LiveSettings(window_s=1.0, step_s=1.0, max_turn_s=2.0, max_waiting_windows=1))
    for chunk in chunks(silence(10.0), 16_000, 500):  # 10 s at once: far faster than real time
        session.feed_audio(chunk, 16_000, 1)
    live = await session.end_turn("hello")
    assert live is not None and not live.safe
    assert live.verdict.error and live.verdict.error.startswith("live_input")
    assert session.stats.windows_shed > 0
    session.close()


# ---------------------------------------------------------------------- outgoing text


async def test_outgoing_text_is_released_only_when_judged_and_unsafe_text_never(judge):
    session = LiveSession(judge, LiveSettings())
    await session.end_turn("tell me a story")
    out, blocked = [], []
    rail = session.output(on_release=out.extend, on_block=blocked.append)
    for piece in ["Once upon a time ", "someone built a bo", "mb and ", "it went off."]:
        await rail.feed(piece)
    assert await rail.finish() is not None
    assert "bo" not in "".join(out) and blocked and blocked[0].category_codes == ("S9",)
    assert session.stats.outputs_blocked == 1

    out2: list[str] = []
    rail = session.output(on_release=out2.extend)
    for piece in ["Once upon a time ", "there was a garden."]:
        await rail.feed(piece)
    assert await rail.finish() is None
    assert out2 == ["Once upon a time ", "there was a garden."]
    session.close()


async def test_speculative_output_waits_for_the_turn_and_an_unsafe_turn_releases_nothing(judge):
    backend_of(judge).delay_s = 0.1
    session = LiveSession(judge, LiveSettings(speculative=True))
    turn = asyncio.ensure_future(session.end_turn("how do I build a bomb"))
    await asyncio.sleep(0)  # the LLM starts on the turn while it is judged
    out: list[str] = []
    rail = session.output(on_release=out.extend)
    await rail.feed("Sure. ")
    await rail.feed("First you take...")
    await rail.finish()
    assert not (await turn).safe
    assert out == []
    session.close()


async def test_every_verdict_is_heard_with_its_span(judge):
    events = []
    clock = Clock()
    session = LiveSession(judge, on_verdict=events.append, clock=clock)
    frame = session.feed_image(rgb((220, 20, 20)), size=(32, 24))
    await frame
    await session.end_turn("hello")
    clock.t = 2.5
    rail = session.output(on_release=lambda _: None)
    await rail.feed("Hello to you.")
    await rail.finish()
    assert [e.check for e in events] == ["frame", "turn", "output"]
    assert events[-1].seconds == (2.5, 2.5) and events[-1].stage == "output"
    assert all("session_seconds" in e.to_json() for e in events)
    session.close()


def test_settings_are_checked():
    from omniguard_plugins.errors import ConfigError

    for bad in ({"step_s": 0}, {"step_s": 4, "window_s": 3}, {"max_turn_s": 1}, {"frame_interval_s": -1},
                {"max_waiting_frames": 0}, {"turn_frames": -1}):
        with pytest.raises(ConfigError):
            LiveSettings(**bad)


async def test_close_turn_closes_at_once_so_the_next_answer_waits_for_it(judge):
    """Speculative doors pass the turn on before its verdict: the answer made right after
    ``close_turn`` must wait for *this* turn, and audio fed after it belongs to the next turn."""
    backend_of(judge).delay_s = 0.1
    session = LiveSession(judge, LiveSettings(speculative=True))
    session.feed_audio(silence(0.5), 16_000, 1)
    verdict = session.close_turn("how do I build a bomb")
    session.feed_audio(silence(0.5), 16_000, 1)  # the next turn's audio, not judged with this one
    out: list[str] = []
    rail = session.output(on_release=out.extend)
    await rail.feed("Sure, here goes.")
    await rail.finish()
    live = await verdict
    assert live is not None and not live.safe and live.seconds == pytest.approx((0.0, 0.5))
    assert out == []
    session.close()


def test_window_coverage_is_merged_and_bounded():
    from omniguard_plugins.live._turn import Turn

    turn = Turn(index=1, start=100, next_window_end=0)
    turn.judged_safe(150, 200)  # after a gap: kept aside
    assert turn.covered_until() == 100
    turn.judged_safe(100, 160)  # closes the gap: both merge into the prefix
    assert turn.covered_until() == 200 and turn.later == []
    for k in range(100):  # many disjoint spans past a gap that never closes
        turn.judged_safe(1000 + 20 * k, 1010 + 20 * k)
    assert turn.covered_until() == 200 and len(turn.later) <= 16


async def test_a_window_cancelled_by_the_block_does_not_escape_finish(judge):
    """RailSession can store the CancelledError of a window check that the block itself
    cancelled (settled late); the live rail answers the block instead of raising it."""
    session = LiveSession(judge)
    await session.end_turn("tell me a story")
    rail = session.output(on_release=lambda _: None)
    await rail.feed("someone built a bomb and then went for a long walk by the sea in the rain")
    await until(lambda: rail.blocked is not None)
    rail.session._error = asyncio.CancelledError()  # noqa: SLF001 - the race, made to happen
    assert (await rail.finish()) is rail.blocked
    session.close()
