"""The core stream rail (omniguard_plugins.streaming): its rules as properties over random
answers, chunkings, settings and verdict orders, then the two drivers on a real scripted judge."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniguard_plugins import ConfigError, Image, Turn, Verdict
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate, moderate, output_judge
from omniguard_plugins.testing import scripted_judge
from tests.support.stream_helpers import Lockstep, cut

TRIGGER = "XX"  # a window is unsafe when it holds the whole trigger
SAFE, UNSAFE = Verdict(safe=True), Verdict(safe=False)


def keyword(window: Window) -> Verdict:
    return UNSAFE if TRIGGER in window.text or any(isinstance(p, Image) for p in window.parts) else SAFE


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, list[str], StreamSettings, int | None]:
    step = draw(st.integers(1, 40))
    window = draw(st.integers(step + len(TRIGGER), step + 60))  # phrases up to the overlap are seen whole
    answer = draw(st.text(alphabet="ab .\n", max_size=300))
    at: int | None = None
    if draw(st.booleans()):
        at = draw(st.integers(0, len(answer)))
        answer = answer[:at] + TRIGGER + answer[at:]
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(answer) - 1)), max_size=40)))
    chunks = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)]) if a < b]
    cfg = StreamSettings(window, step, max_unjudged_chars=draw(st.sampled_from([0, 0, 0, 5, 50])),
                         max_in_flight=draw(st.integers(1, 5)))
    return answer, chunks, cfg, at


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=streams(), data=st.data())
def test_rules_hold_for_any_answer_chunking_settings_and_verdict_order(case, data) -> None:
    answer, chunks, cfg, at = case
    rail: StreamRail[str] = StreamRail(cfg)
    waiting: list[Window] = []
    shown: list[str] = []
    judged: list[Window] = []
    source = iter(chunks)
    more = True
    while not rail.done:
        assert len([w for w in waiting if w.kind != "final"]) <= cfg.max_in_flight
        # the verdicts come back in any order, while the source keeps streaming
        if waiting and (not more or data.draw(st.booleans())):
            window = waiting.pop(data.draw(st.integers(0, len(waiting) - 1)))
            judged.append(window)
            rail.settle(window, keyword(window))
        elif more:
            chunk = next(source, None)
            if chunk is None:
                more = False
                waiting.extend(rail.finish())
            else:
                rail.push(chunk)
        waiting.extend(rail.due())
        shown.extend(rail.release())
        text = "".join(shown)
        assert answer.startswith(text)
        unsafe_steps = [w.start for w in judged if w.kind == "step" and TRIGGER in w.text]
        if unsafe_steps and rail.blocked is not None:  # nothing from an unsafe window, nor after it
            assert len(text) <= min(unsafe_steps) + cfg.max_unjudged_chars
        if at is not None:
            assert len(text) <= at + cfg.max_unjudged_chars  # the trigger is never shown...
            if cfg.max_unjudged_chars == 0:
                assert TRIGGER not in text  # ...not even in part
    if at is None:
        assert "".join(shown) == answer  # a safe answer comes out byte-identical
        assert rail.blocked is None
        # always judged whole
        assert answer.strip() == "" or any(w.kind == "final" and w.text == answer for w in judged)
    else:
        assert rail.blocked is not None


def test_windows_fall_on_step_boundaries_whatever_the_chunking() -> None:
    def windows(chunks: list[str]) -> list[tuple[int, int]]:
        rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=50, step_chars=20, max_in_flight=99))
        for chunk in chunks:
            rail.push(chunk)
        return [(w.start, w.end) for w in rail.due()]

    text = "0123456789" * 10
    assert windows([text]) == windows([text[i : i + 3] for i in range(0, 100, 3)])
    assert windows([text]) == [(0, 20), (0, 40), (10, 60), (30, 80), (50, 100)]


def test_text_is_released_behind_a_safe_window_and_its_overlap() -> None:
    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=30, step_chars=10))
    for _ in range(6):
        rail.push("x" * 10)
    first, second, *rest = rail.due()
    rail.settle(second, SAFE)  # out of order: nothing yet, the first window is still out
    assert rail.release() == []
    rail.settle(first, SAFE)
    assert rail.release() == []  # windows 1 and 2 passed; window 3 starts at 0: still held
    rail.settle(rest[0], SAFE)
    assert rail.release() == ["x" * 10]  # window 4 starts at 10: the first chunk is now behind it


def test_media_is_judged_as_it_arrives_and_holds_what_follows() -> None:
    def read(chunk: object) -> tuple[str | None, tuple[Image, ...]]:
        return ("", (chunk,)) if isinstance(chunk, Image) else (chunk, ())  # type: ignore[return-value]

    image = Image(b"\x89PNG fake")
    rail: StreamRail[object] = StreamRail(StreamSettings(window_chars=10, step_chars=10), read=read)
    rail.push("a caption ")
    rail.push(image)
    rail.push("and text")
    media, step = rail.due()
    assert media.kind == "media" and media.text == "a caption " and media.parts[-1] is image  # with the text before it
    rail.settle(step, SAFE)
    assert rail.release() == ["a caption "]
    rail.settle(media, SAFE)
    assert rail.release() == [image]
    final = rail.finish()
    assert [w.kind for w in final] == ["final"] and final[0].parts[1] is image


def test_unreadable_chunks_wait_for_the_final_check() -> None:
    rail: StreamRail[object] = StreamRail(StreamSettings(window_chars=5, step_chars=5))
    rail.push({"a": "dict"})  # the default read knows only str
    assert rail.release() == [] and rail.due() == []
    [final] = rail.finish()
    rail.settle(final, SAFE)
    assert rail.release() == [{"a": "dict"}] and rail.done


def test_a_block_is_final() -> None:
    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=4, step_chars=2))
    rail.push("abcdef")
    first, *_ = rail.due()
    rail.settle(first, UNSAFE)
    assert rail.blocked is not None and rail.done
    assert rail.blocked.details["stream_window"] == (0, 2) and rail.blocked_window is first
    assert rail.release() == [] and rail.due() == [] and rail.finish() == []
    rail.push("more")  # ignored, not an error: the driver stops anyway


def test_empty_answers_need_no_check_and_settings_are_checked() -> None:
    rail: StreamRail[str] = StreamRail()
    rail.push("  ")
    assert rail.finish() == [] and rail.release() == ["  "]
    with pytest.raises(ConfigError, match="already finished"):
        rail.push("late")
    with pytest.raises(ConfigError, match="step_chars"):
        StreamSettings(window_chars=10, step_chars=20)
    with pytest.raises(ConfigError, match="max_unjudged_chars"):
        StreamSettings(max_unjudged_chars=-1)
    with pytest.raises(ConfigError, match="max_in_flight"):
        StreamSettings(max_in_flight=0)
    with pytest.raises(ConfigError, match="int"):
        StreamSettings(window_chars=True)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the drivers, on a real judge


@pytest.fixture
def judge():
    og = scripted_judge({"bomb": "S9"}, cache_size=0)
    yield og
    og.close()


class Source:
    """A sync source that records whether it was closed and how far it was read; with a
    ``pace`` it streams in lockstep with the judge."""

    def __init__(self, chunks: list[str], pace: Lockstep | None = None) -> None:
        self.chunks = chunks
        self.pace = pace
        self.read = 0
        self.closed = False

    def __iter__(self) -> Iterator[str]:
        emitted = 0
        try:
            for chunk in self.chunks:
                if self.pace is not None:
                    self.pace.wait(emitted)
                self.read += 1
                emitted += len(chunk)
                yield chunk
        finally:
            self.closed = True


def test_moderate_judges_in_context_and_releases_a_safe_answer_whole(judge) -> None:
    text = "The weather is fine today. " * 10
    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=60, step_chars=30))
    context = (Turn("user", ("How is the weather?",)),)
    assert "".join(moderate(Source(cut(text)), rail,
                            output_judge(judge, context))) == text
    assert rail.blocked is None
    assert all("User: How is the weather?" in p for p in judge.backend.prompts)
    assert [v.details["stream_check"] for v in rail.verdicts].count("final") == 1


def test_moderate_closes_the_source_at_once_on_a_block(judge) -> None:
    text = "calm words " * 10 + "a bomb " + "never read " * 200
    source = Source(cut(text, 5), Lockstep(judge, 20, offset=0))
    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=40, step_chars=20))
    shown = "".join(moderate(source, rail, output_judge(judge)))
    assert rail.blocked is not None and "bomb" not in shown and source.closed
    assert source.read < len(source.chunks)


async def test_amoderate_behaves_the_same(judge) -> None:
    text = "calm words " * 10 + "a bomb " + "never read " * 200
    closed = asyncio.Event()

    async def source():
        try:
            for i in range(0, len(text), 5):
                await asyncio.sleep(0)
                yield text[i : i + 5]
        finally:
            closed.set()

    rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=40, step_chars=20))
    shown = "".join([c async for c in amoderate(source(), rail, output_judge(judge))])
    assert rail.blocked is not None and "bomb" not in shown and closed.is_set()


def test_a_judge_that_raises_ends_the_stream_and_closes_the_source() -> None:
    async def broken(window: Window) -> Verdict:
        raise RuntimeError("judge down")

    source = Source(["x" * 10] * 5)
    with pytest.raises(RuntimeError, match="judge down"):
        list(moderate(source, StreamRail(StreamSettings(window_chars=10, step_chars=10)), broken))
    assert source.closed


def test_concurrent_sync_streams_share_the_judges_batches() -> None:
    og = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=20)
    text = "fine words " * 40
    results: list[str] = []

    def one() -> None:
        rail: StreamRail[str] = StreamRail(StreamSettings(window_chars=100, step_chars=100))
        results.append("".join(moderate([text], rail, output_judge(og))))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    og.close()
    assert results == [text] * 8
    assert og.backend.calls < len(og.backend.requests)  # windows of different streams met in batches
