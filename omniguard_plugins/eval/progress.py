"""Progress lines on stderr for long runs, terminal or not (a CI log, ``2> log``, ``nohup``).

One line every ``every_s`` seconds and one at the end: what is being done, items done of the
total, items per second over this session, and the time left at that pace. No carriage
returns or bars, so a log file reads as well as a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Call it with the number of items just finished; ``close()`` prints the last line."""

    def __init__(self, total: int, label: str, *, every_s: float = 5.0, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.done = 0
        self._skipped = 0
        self._started = time.monotonic()
        self._last = self._started

    def skip(self, n: int) -> None:
        """Items already done before this session (a resumed run): counted, not timed."""
        self.done += n
        self._skipped += n

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print()

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        fresh = self.done - self._skipped
        rate = fresh / elapsed if elapsed > 0 and fresh else 0.0
        left = self.total - self.done
        eta = f", ETA {_duration(left / rate)}" if rate and left > 0 else ""
        return f"{self.label}: {self.done}/{self.total} items, {rate:.2f} items/s{eta} ({_duration(elapsed)} so far)"

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        self._print()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
