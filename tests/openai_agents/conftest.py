"""A real Agents SDK Runner on the SDK's own ScriptedModel (its ``Model`` interface, no network),
tracing off, and a scripted judge: text about bombs is unsafe (S9), mostly red images unsafe (S1);
the judge records the kinds of media it was shown."""

from __future__ import annotations

import pytest

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import keyword_handler, scripted_judge

pytest.importorskip("agents")

from agents import set_tracing_disabled  # noqa: E402

set_tracing_disabled(True)

_rule = keyword_handler({"bomb": "S9"}, red_images=True)


class Recording:
    """The scripted judge's handler, remembering which media kinds each check carried."""

    def __init__(self) -> None:
        self.media: list[list[str]] = []

    def __call__(self, prompt, media):
        self.media.append([m.kind for m in media])
        return _rule(prompt, media)


@pytest.fixture
def seen() -> Recording:
    return Recording()


@pytest.fixture
def judge(seen: Recording):
    guard = scripted_judge(seen, cache_size=0)
    yield guard
    guard.close()


@pytest.fixture(autouse=True)
def _no_shared_judge_leaks():
    yield
    OmniGuard.reset_shared()
