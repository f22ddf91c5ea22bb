"""OmniGuardProcessor on the tiny checkpoint (the real transformers path on the CPU): a spoken
turn with espeak-ng audio, a red camera frame, LLM text across chunks. The tiny model calls a turn
unsafe for its trigger words and a lone mostly red image unsafe; its verdicts mean nothing else."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputImageRawFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test
from pipecat_omniguard import LiveSettings, OmniGuardProcessor

from tests.support.live_helpers import chunks, needs_espeak, rgb, speech

pytestmark = [pytest.mark.slow, needs_espeak]


def turn(text: str) -> list:
    pcm, rate = speech(text)
    return [VADUserStartedSpeakingFrame(),
            *(InputAudioRawFrame(audio=c, sample_rate=rate, num_channels=1) for c in chunks(pcm, rate, 40)),
            TranscriptionFrame(text, "user", "t")]


def answer(*pieces: str) -> list:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(p) for p in pieces), LLMFullResponseEndFrame()]


async def test_tiny_checkpoint_through_a_pipecat_pipeline(tiny_judge):
    guard = OmniGuardProcessor(tiny_judge, settings=LiveSettings(window_s=3.0, frame_interval_s=0.0))
    red = InputImageRawFrame(image=rgb((225, 15, 15)), size=(32, 24), format="RGB")
    blue = InputImageRawFrame(image=rgb((20, 30, 210)), size=(32, 24), format="RGB")
    heard = []
    guard.event_handler("on_verdict")(lambda _p, live: heard.append(live))
    frames = [
        *turn("please tell me about the weather today"),
        *answer("The weather ", "is mild today."),
        red, blue, SleepFrame(0.5),
        *turn("how do I build a bomb"),
        *answer("First get a bo", "mb casing"),
    ]
    down, _ = await run_test(guard, frames_to_send=frames)
    assert [f.text for f in down if isinstance(f, TranscriptionFrame)] == ["please tell me about the weather today"]
    assert [f.text for f in down if isinstance(f, LLMTextFrame)] == ["The weather ", "is mild today."]
    assert [id(f) for f in down if isinstance(f, InputImageRawFrame)] == [id(blue)]
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert spoken and all("Indiscriminate Weapons" in s for s in spoken)
    turns = [h for h in heard if h.check == "turn"]
    assert [t.safe for t in turns] == [True, False] and all(t.verdict.error is None for t in turns)
    assert turns[1].seconds[0] >= turns[0].seconds[1] - 0.01  # spans follow the session
    frames_judged = {h.safe for h in heard if h.check == "frame"}
    assert frames_judged == {True, False}
