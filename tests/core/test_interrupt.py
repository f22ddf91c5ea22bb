"""Ctrl-C while a sync check waits stops the caller; it never becomes a failed (blocking) verdict."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from omniguard_plugins.judge import OmniGuard
from omniguard_plugins.testing import ScriptedBackend, keyword_handler


def test_keyboard_interrupt_while_waiting_is_raised_not_judged() -> None:
    started = threading.Event()
    release = threading.Event()
    plain = keyword_handler(["bomb"])

    def slow(prompt: str, media: list) -> str:
        started.set()
        release.wait(60)
        return plain(prompt, media)

    judge = OmniGuard(backend=ScriptedBackend(slow), model="scripted", max_wait_ms=1.0, timeout_s=30)
    seen: list[object] = []
    judge.add_listener(seen.append)

    def interrupt() -> None:
        started.wait(10)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: it interrupts the blocking wait

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            judge.check(user="hello")
        assert not release.is_set()  # it came while the model was still working, not after
    finally:
        release.set()
        judge.close()
    assert seen == []  # no verdict was made up for the interrupted check
    assert judge.stats.checks == 0
