"""Pieces the streaming tests of every door share.

``Lockstep`` makes "the model keeps streaming while windows are judged" deterministic: after
each chunk the scripted model waits until the judge has answered every window that was due by
then, so a verdict is always in before the model says the next thing (no timing in the
assertions).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from omniguard_plugins import OmniGuard


class Lockstep:
    """Waits (up to 10 s) until the judge has given ``offset + emitted // step`` verdicts. Once
    one was unsafe it pauses a little on the next few chunks (room for the guard to see the
    verdict and close the model), then not at all (LangChain may drain a stopped chain's model
    for its traces)."""

    def __init__(self, judge: OmniGuard, step: int, offset: int = 1) -> None:
        self.step = step
        self.offset = offset
        self.count = 0
        self.unsafe = False
        self._grace = 5
        self._lock = threading.Lock()
        judge.add_listener(self._seen)

    def _seen(self, verdict: Any) -> None:
        with self._lock:
            self.count += 1
            self.unsafe = self.unsafe or not verdict.safe

    def _due(self, emitted: int) -> bool:
        return self.unsafe or self.count >= self.offset + emitted // self.step

    def _pause(self) -> float:
        if self.unsafe and self._grace > 0:
            self._grace -= 1
            return 0.02
        return 0.0

    def wait(self, emitted: int) -> None:
        deadline = time.monotonic() + 10
        while not self._due(emitted) and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(self._pause())

    async def await_(self, emitted: int) -> None:
        deadline = time.monotonic() + 10
        while not self._due(emitted) and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
        await asyncio.sleep(self._pause())


def cut(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# ---------------------------------------------------------------------- the property every door shows

TRIGGER = "bomb"  # what the scripted judge calls unsafe (S9)


def answers():
    """Hypothesis: (answer, where the trigger is or None, its chunks, StreamSettings)."""
    from hypothesis import strategies as st

    from omniguard_plugins.streaming import StreamSettings

    @st.composite
    def draw_case(draw: Any) -> tuple[str, int | None, list[str], Any]:
        step = draw(st.integers(5, 60))
        window = draw(st.integers(step + len(TRIGGER), step + 120))  # phrases up to the overlap are seen whole
        answer = draw(st.text(alphabet="a ce.\n", min_size=1, max_size=400))
        at = None
        if draw(st.booleans()):
            at = draw(st.integers(0, len(answer)))
            answer = answer[:at] + TRIGGER + answer[at:]
        cuts = sorted(draw(st.sets(st.integers(1, len(answer) - 1), max_size=30))) if len(answer) > 1 else []
        chunks = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)])]
        cfg = StreamSettings(window, step, max_unjudged_chars=draw(st.sampled_from([0, 0, 0, 10])),
                             max_in_flight=draw(st.integers(1, 4)))
        return answer, at, chunks, cfg

    return draw_case()


def check_shown(answer: str, at: int | None, shown: str, blocked: bool, cfg: Any) -> None:
    """No shown byte from an unsafe window or after it; a safe answer shown byte-identical."""
    assert answer.startswith(shown)
    if at is None:
        assert not blocked and shown == answer
        return
    assert blocked
    # the first step window that holds the whole trigger: nothing from it (or after it) is shown
    step, window = cfg.step_chars, cfg.window_chars
    first = next(e for e in range(step, len(answer) + window + step, step) if e >= at + len(TRIGGER))
    bound = min(at, max(0, first - window)) if first <= len(answer) else at
    assert len(shown) <= bound + cfg.max_unjudged_chars
