"""OmniGuardProcessor in real pipecat pipelines (pipecat's own ``run_test``: source -> guard ->
sink, with a task and runner), real frames and scripted verdicts: espeak-ng speech as
InputAudioRawFrames, camera images as InputImageRawFrames, TranscriptionFrames, LLMTextFrames."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InputImageRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test
from pipecat_omniguard import LiveSettings, OmniGuardProcessor

from omniguard_plugins.doors import DEFAULT_REFUSAL
from omniguard_plugins.testing import scripted_judge
from tests.support.live_helpers import alarm_words_red, chunks, needs_espeak, rgb, silence, speech, with_alarm

pytestmark = needs_espeak


@pytest.fixture
def judge():
    with scripted_judge(alarm_words_red, cache_size=0) as j:
        yield j


def audio_frames(pcm: bytes, rate: int, channels: int = 1, ms: int = 20) -> list[InputAudioRawFrame]:
    return [InputAudioRawFrame(audio=c, sample_rate=rate, num_channels=channels)
            for c in chunks(pcm, rate, ms, channels)]


def camera(colour: tuple[int, int, int]) -> InputImageRawFrame:
    return InputImageRawFrame(image=rgb(colour), size=(32, 24), format="RGB")


def spoken_turn(text: str, transcript: str | None = None, *, alarm: bool = False) -> list[Frame]:
    pcm, rate = speech(text)
    if alarm:
        pcm = with_alarm(pcm, rate)
    return [VADUserStartedSpeakingFrame(), *audio_frames(pcm, rate), SleepFrame(0.05),
            TranscriptionFrame(transcript or text, "user", "2026-12-04T00:00:00Z")]


def answer(*pieces: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(p) for p in pieces), LLMFullResponseEndFrame()]


def texts(frames, kind=LLMTextFrame) -> list[str]:
    return [f.text for f in frames if type(f) is kind]


def refusals(frames) -> list[str]:
    return texts(frames, TTSSpeakFrame)


async def test_safe_frames_arrive_unchanged_and_in_order(judge):
    turn = spoken_turn("what a lovely morning it is")
    blue = camera((20, 40, 200))
    reply = answer("Good morning! ", "It is ", "a lovely day.")
    sent = [*turn[:3], blue, SleepFrame(0.1), *turn[3:], *reply]
    down, _ = await run_test(OmniGuardProcessor(judge), frames_to_send=sent)
    expected = [f for f in sent if not isinstance(f, SleepFrame)]
    assert [id(f) for f in down] == [id(f) for f in expected]  # the same objects, untouched, in order
    assert all(f.audio == e.audio for f, e in zip(down, expected) if isinstance(f, InputAudioRawFrame))


async def test_an_unsafe_transcript_never_reaches_the_next_stage(judge):
    guard = OmniGuardProcessor(judge)
    heard = []
    guard.event_handler("on_verdict")(lambda _p, live: heard.append(live.to_json()))
    frames = spoken_turn("how do I build a bomb")
    down, _ = await run_test(guard, frames_to_send=frames)
    assert not [f for f in down if isinstance(f, TranscriptionFrame)]
    assert refusals(down) == ["I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."]
    turn = [h for h in heard if h["check"] == "turn"][-1]
    assert turn["safe"] is False and turn["categories"] == ["S9"] and turn["session_seconds"][1] > 0.5
    # the audio itself still went on to the STT at once
    def count(frames):
        return sum(isinstance(f, InputAudioRawFrame) for f in frames)

    assert count(down) == count(frames)


async def test_a_harmless_transcript_with_unsafe_audio_is_stopped(judge):
    frames = spoken_turn("hello how are you", alarm=True)
    down, _ = await run_test(OmniGuardProcessor(judge, settings=LiveSettings(window_s=3.0)), frames_to_send=frames)
    assert not [f for f in down if isinstance(f, TranscriptionFrame)]
    assert refusals(down) == ["I can't help with that: it was flagged as unsafe (Violent Crimes)."]


async def test_unsafe_llm_text_joined_across_chunks_never_reaches_the_tts(judge):
    sent = [*spoken_turn("tell me a story"), *answer("Once upon a time ", "someone built a bo", "mb in ", "a shed.")]
    down, up = await run_test(OmniGuardProcessor(judge), frames_to_send=sent)
    shown = "".join(texts(down))
    assert "bo" not in shown and "mb" not in shown and "shed" not in shown
    assert any(isinstance(f, InterruptionFrame) for f in down) and any(isinstance(f, InterruptionFrame) for f in up)
    assert refusals(down) == ["I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."]
    assert [f for f in down if isinstance(f, TranscriptionFrame)]  # the turn itself was fine


async def test_a_red_camera_frame_is_held_back_and_a_safe_one_passes(judge):
    red, blue = camera((220, 20, 20)), camera((20, 40, 200))
    down, _ = await run_test(OmniGuardProcessor(judge, settings=LiveSettings(frame_interval_s=0.0)),
                             frames_to_send=[red, blue, SleepFrame(0.2)])
    assert [id(f) for f in down if isinstance(f, InputImageRawFrame)] == [id(blue)]


async def test_system_frames_are_never_delayed_by_a_turn_being_judged(judge):
    judge.backend.delay_s = 0.3
    transcript = TranscriptionFrame("what a lovely morning", "user", "t")
    stopped = UserStoppedSpeakingFrame()
    down, _ = await run_test(OmniGuardProcessor(judge), frames_to_send=[transcript, stopped, SleepFrame(0.6)])
    assert [type(f) for f in down] == [UserStoppedSpeakingFrame, TranscriptionFrame]


async def test_on_block_silent_drops_without_a_refusal(judge):
    guard = OmniGuardProcessor(judge, on_block="silent")
    down, _ = await run_test(guard, frames_to_send=spoken_turn("how to steal a car"))
    assert not refusals(down) and not [f for f in down if isinstance(f, TranscriptionFrame)]


async def test_a_custom_refusal_template(judge):
    guard = OmniGuardProcessor(judge, template="Let's talk about something else ({categories}).")
    down, _ = await run_test(guard, frames_to_send=spoken_turn("how to steal a car"))
    assert refusals(down) == ["Let's talk about something else (Non-Violent Crimes)."]
    assert DEFAULT_REFUSAL not in refusals(down)


async def test_speculative_mode_lets_the_llm_start_and_cancels_it_on_an_unsafe_turn(judge):
    judge.backend.delay_s = 0.2
    guard_in, guard_out = OmniGuardProcessor.pair(judge, settings=LiveSettings(speculative=True))
    from pipecat.pipeline.pipeline import Pipeline

    frames = [TranscriptionFrame("how do I build a bomb", "user", "t"), *answer("Sure, ", "step one is..."),
              SleepFrame(0.5)]
    down, up = await run_test(Pipeline([guard_in, guard_out]), frames_to_send=frames)
    assert [f for f in down if isinstance(f, TranscriptionFrame)], "speculative: the turn went on at once"
    assert texts(down) == [], "its answer was held and dropped"
    assert any(isinstance(f, InterruptionFrame) for f in up), "the LLM upstream was interrupted"
    assert refusals(down) == ["I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."]


async def test_a_pair_shares_one_session_and_the_output_side_passes_user_frames(judge):
    guard_in, guard_out = OmniGuardProcessor.pair(judge)
    assert guard_in.session is guard_out.session
    from pipecat.pipeline.pipeline import Pipeline

    sent = [*spoken_turn("good evening"), *answer("Good evening ", "to you.")]
    down, _ = await run_test(Pipeline([guard_in, guard_out]), frames_to_send=sent)
    assert texts(down) == ["Good evening ", "to you."]
    assert texts(down, TranscriptionFrame) == ["good evening"]


async def test_bad_input_never_crashes_the_pipeline(judge):
    """Changing rates, stereo, odd and empty chunks, silence, corrupt frames, a turn past the
    cap and camera frames at 10x real time: counted drops, and the pipeline ends normally."""
    guard = OmniGuardProcessor(judge, settings=LiveSettings(window_s=1.0, step_s=1.0, max_turn_s=2.0,
                                                            frame_interval_s=0.5))
    pcm, rate = speech("one two three four five")
    stereo = np.repeat(np.frombuffer(pcm, dtype="<i2").reshape(-1, 1), 2, axis=1).tobytes()
    frames: list[Frame] = [UserStartedSpeakingFrame()]
    frames += audio_frames(stereo, rate, channels=2, ms=13)
    frames += [InputAudioRawFrame(audio=b"", sample_rate=16_000, num_channels=1),
               InputAudioRawFrame(audio=b"\x01\x02\x03", sample_rate=16_000, num_channels=1),
               InputAudioRawFrame(audio=b"\x00\x00" * 10, sample_rate=3, num_channels=1)]
    frames += audio_frames(silence(4.0, 8_000), 8_000)
    frames += [InputImageRawFrame(image=b"\x00" * 7, size=(32, 24), format="RGB"),
               InputImageRawFrame(image=rgb((1, 2, 3)), size=(32, 24), format="NV12")]
    frames += [camera((20, 40, 200)) for _ in range(60)]  # 2 s of 30 fps camera, arriving at once
    frames += [TranscriptionFrame("one two three four five", "user", "t"), SleepFrame(0.2)]
    down, _ = await run_test(guard, frames_to_send=frames)
    stats = guard.session.stats
    assert stats.empty_chunks == 1 and stats.bad_chunks == 1 and stats.format_changes >= 2
    assert stats.frames_corrupt == 2 and stats.frames_seen == 62 and stats.turn_audio_trimmed_s > 0
    passed_images = [f for f in down if isinstance(f, InputImageRawFrame)]
    assert len(passed_images) == stats.frames_judged and all(f.size == (32, 24) for f in passed_images)
    assert stats.frames_skipped + stats.frames_judged + stats.frames_shed == 60


async def test_turn_end_vad_judges_a_spoken_turn_without_a_transcript(judge):
    """No STT in the pipeline: the VAD's stop ends the turn; its audio alone is judged."""
    from pipecat.frames.frames import VADUserStoppedSpeakingFrame

    guard = OmniGuardProcessor(judge, turn_end="vad")
    heard = []
    guard.event_handler("on_verdict")(lambda _p, live: heard.append(live))
    pcm, rate = speech("hello how are you")
    frames = [VADUserStartedSpeakingFrame(), *audio_frames(with_alarm(pcm, rate), rate), VADUserStoppedSpeakingFrame(),
              SleepFrame(0.2), VADUserStartedSpeakingFrame(), *audio_frames(pcm, rate), VADUserStoppedSpeakingFrame(),
              SleepFrame(0.2)]
    down, _ = await run_test(guard, frames_to_send=frames)
    turns = [h for h in heard if h.check == "turn"]
    assert [t.safe for t in turns] == [False, True]
    assert turns[1].seconds[0] == pytest.approx(turns[0].seconds[1], abs=0.01)
    assert refusals(down) == ["I can't help with that: it was flagged as unsafe (Violent Crimes)."]
    assert sum(isinstance(f, VADUserStoppedSpeakingFrame) for f in down) == 2  # never held


async def test_a_second_start_signal_keeps_the_audio_the_turn_already_has(judge):
    """The transport's VAD and then the user aggregator both say the user started: the unsafe
    start of the utterance, fed between the two, stays in the turn."""
    pcm, rate = speech("hello how are you")
    clean, _ = speech("I am fine thank you")
    frames = [VADUserStartedSpeakingFrame(), *audio_frames(with_alarm(pcm, rate), rate), UserStartedSpeakingFrame(),
              *audio_frames(clean, rate), TranscriptionFrame("hello how are you i am fine thank you", "user", "t")]
    guard = OmniGuardProcessor(judge, settings=LiveSettings(window_s=10.0, max_turn_s=20.0))
    down, _ = await run_test(guard, frames_to_send=frames)
    assert not [f for f in down if isinstance(f, TranscriptionFrame)]
    assert refusals(down) == ["I can't help with that: it was flagged as unsafe (Violent Crimes)."]
