"""Helpers the in-process reliability tests share: a model that waits for a test, and a poll."""

from __future__ import annotations

import asyncio
import threading
import time

from omniguard_plugins.testing import keyword_handler

KEYWORDS = keyword_handler({"bomb": "S9"})
WAIT = 10.0


class Gated:
    """A handler that holds the model worker until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen: list[str] = []

    def __call__(self, prompt, media):
        self.seen.append(prompt)
        assert self.gate.wait(WAIT)
        return KEYWORDS(prompt, media)


async def until(condition, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
