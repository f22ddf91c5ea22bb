"""omniguard_plugins.streaming.StreamModerator: the framework-free window logic the
LlamaIndex (and LangChain) stream guards share. Lives here until the core gets a test folder."""

from __future__ import annotations

import pytest

from omniguard_plugins import ConfigError
from omniguard_plugins.streaming import StreamModerator
from omniguard_plugins.testing import scripted_judge


@pytest.fixture
def judge():
    guard = scripted_judge({"bomb": "S9"}, cache_size=0)
    yield guard
    guard.close()


def chunks(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def drive(moderator: StreamModerator, parts: list[str]) -> str:
    shown = ""
    for part in parts:
        blocked = moderator.feed(part)
        shown += moderator.take()
        if blocked is not None:
            return shown
    moderator.finish()
    return shown + moderator.take()


def test_windows_are_judged_every_n_chars_and_a_safe_stream_is_released_whole(judge):
    text = "The weather is fine today. " * 10
    moderator = StreamModerator(judge, window_chars=60, every_chars=30, context="How is the weather?")
    assert drive(moderator, chunks(text)) == text
    assert moderator.verdict is None and moderator.finished
    spans = [v.details["stream_window"] for v in moderator.verdicts]
    assert spans[-1] == (0, len(text))  # the final full check
    assert all(end - start <= 60 for start, end in spans[:-1])
    ends = [end for _, end in spans[:-1]]
    assert all(30 <= b - a < 30 + 7 for a, b in zip([0, *ends], ends))  # once >= 30 new chars came
    assert "User: How is the weather?" in judge.backend.prompts[0]


def test_unsafe_window_cuts_the_stream_and_holds_back_unjudged_text(judge):
    text = "Safe words here. " * 6 + "Now the bomb part. " + "Never shown. " * 5
    moderator = StreamModerator(judge, window_chars=40, every_chars=20)
    shown = drive(moderator, chunks(text, 5))
    assert moderator.blocked and moderator.verdict.category_codes == ("S9",)
    start, end = moderator.verdict.details["stream_window"]
    assert "bomb" in text[start:end] and shown == text[: len(shown)]
    assert "bomb" not in shown and "Never" not in moderator.text
    assert moderator.feed("more") is moderator.verdict  # a blocked stream stays blocked
    assert moderator.finish() is moderator.verdict


def test_without_hold_back_text_flows_until_the_cut(judge):
    moderator = StreamModerator(judge, window_chars=40, every_chars=40, hold_back=False)
    assert moderator.feed("first bit, ") is None
    assert moderator.take() == "first bit, "  # released before any check


def test_final_check_catches_what_no_window_reached(judge):
    moderator = StreamModerator(judge, window_chars=100, every_chars=100)
    assert moderator.feed("a short bomb answer") is None  # under every_chars: not judged yet
    assert moderator.take() == ""
    assert moderator.finish() is not None
    assert moderator.take() == ""


async def test_async_feed_and_finish_behave_the_same(judge):
    moderator = StreamModerator(judge, window_chars=30, every_chars=15)
    for part in chunks("all calm here " * 3):
        assert await moderator.afeed(part) is None
    assert await moderator.afinish() is None
    assert moderator.take() == "all calm here " * 3


def test_bad_settings(judge):
    with pytest.raises(ConfigError):
        StreamModerator(judge, window_chars=10, every_chars=20)
    with pytest.raises(ConfigError):
        StreamModerator(judge, every_chars=0)
    moderator = StreamModerator(judge)
    moderator.finish()
    with pytest.raises(ConfigError, match="already finished"):
        moderator.feed("late")
