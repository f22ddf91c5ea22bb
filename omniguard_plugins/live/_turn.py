"""One user turn's bookkeeping: where its audio starts, its windows, and how far they covered it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..verdict import Verdict
    from ._types import LiveVerdict

__all__ = ["Turn"]

_MAX_LATER = 16


@dataclass
class Turn:
    index: int
    start: int  # session sample index where the turn's audio starts
    next_window_end: int
    blocked: LiveVerdict | None = None
    windows: set[asyncio.Future[Verdict | None]] = field(default_factory=set)
    #: turn audio judged safe by windows without a gap, from the turn's start
    covered: int = -1
    #: safe spans after a gap (windows shed or still in flight), a bounded few
    later: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.covered = self.start

    def judged_safe(self, start: int, end: int) -> None:
        """Record a safe window; memory stays bounded however long the turn runs."""
        spans = sorted([*self.later, (start, end)])
        self.later = []
        for a, b in spans:
            if a <= self.covered:
                self.covered = max(self.covered, b)
            else:
                self.later.append((a, b))
        del self.later[:-_MAX_LATER]  # forgetting one only ever leaves audio uncovered: fail closed

    def covered_until(self) -> int:
        return self.covered

