"""The settings panel, applied per request without reloading the model.

Mode and policy are per-check arguments of the judge, so they pass straight through
``guard(..., mode=, policy=)``. ``on_error`` and the score ``threshold`` are judge settings, so
each combination gets its own :class:`OmniGuard` *view*: a judge built on the loaded judge's
config with those fields replaced and the **same backend object** (the model is loaded once;
each view only adds a batcher thread and a result cache). Views are memoised and thresholds
rounded to 0.05 (and localize on or off), so a process holds at most 84 of them. Views are never closed: closing one
would close the shared backend.
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, Field

from omniguard_plugins import OmniGuard, Policy
from omniguard_plugins.policy import Category

__all__ = ["ChatSettings", "JudgeViews"]


class ChatSettings(BaseModel):
    """What the page's settings panel sends with every turn."""

    mode: Literal["verdict", "critique", "score"] = "verdict"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    #: codes of the judge's policy categories to check (None: all of them)
    categories: list[str] | None = None
    on_error: Literal["block", "allow"] = "block"
    check_input: bool = True
    check_output: bool = True
    #: say where an unsafe verdict's harm is (the judge's ``localize``): the page marks it
    localize: bool = True


class JudgeViews:
    """Judges for each (on_error, threshold) over one loaded backend."""

    def __init__(self, judge: OmniGuard) -> None:
        self.base = judge
        self._views: dict[tuple[str, float, bool], OmniGuard] = {}
        self._lock = threading.Lock()

    def view(self, settings: ChatSettings) -> OmniGuard:
        key = (settings.on_error, round(round(settings.threshold / 0.05) * 0.05, 2), settings.localize)
        with self._lock:
            judge = self._views.get(key)
            if judge is None:
                # explain_unsafe: verdict mode continues into a critique only for unsafe verdicts
                config = self.base.config.replace(on_error=key[0], threshold=key[1], explain_unsafe=True,
                                                  localize=key[2])
                judge = self._views[key] = OmniGuard(config=config, backend=self.base.backend)
            return judge

    @property
    def categories(self) -> tuple[Category, ...]:
        """The judge's policy: what the panel lists."""
        return self.base.config.policy.categories

    def policy(self, settings: ChatSettings) -> Policy | None:
        """The judge's policy with the unticked categories dropped (None: all ticked).
        The custom policy renumbers S1..Sn, as the model reads them; names stay."""
        if settings.categories is None:
            return None
        wanted = set(settings.categories)
        kept = tuple(c for c in self.categories if c.code in wanted)
        if not kept:
            raise ValueError("tick at least one category: a policy with none checks nothing")
        return None if len(kept) == len(self.categories) else Policy(kept)
