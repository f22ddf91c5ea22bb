"""What every LlamaIndex door shares: the judge it uses, and its block vocabulary in one table.

| setting                          | value      | ``doors.Action`` | what happens                                   |
|----------------------------------|------------|------------------|------------------------------------------------|
| engines ``on_block``,            | "refuse"   | refuse           | the answer is the refusal (``refusal_message``) |
| ``OmniGuardLLM(on_unsafe=)``     | "raise"    | raise            | ``GuardViolation`` is raised                    |
| ``OmniGuardPostprocessor``       | "drop"     | drop             | the unsafe node is removed                      |
| ``(on_unsafe=)``                 | "annotate" | annotate         | the node is kept, the verdict in its metadata   |
|                                  | "raise"    | raise            | ``GuardViolation`` is raised                    |

Each door decides in one place, with :meth:`omniguard_plugins.doors.Blocking.decide`.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import Any, get_args

from omniguard_plugins import OmniGuard
from omniguard_plugins.doors import Action, Blocking, Stage, summarize
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.verdict import Mode, Verdict

__all__ = ["ON_BLOCK", "JudgeRef", "blocking", "check_mode", "judge_argument", "resolve_judge", "verdict_metadata"]

#: the LlamaIndex vocabulary (``on_block`` / ``on_unsafe``) -> the core's block action
ON_BLOCK: Mapping[str, Action] = {"refuse": "refuse", "raise": "raise", "drop": "drop", "annotate": "annotate"}


def blocking(value: str, allowed: Collection[str], setting: str, template: str | None = None) -> Blocking:
    """The door's :class:`Blocking` for ``setting=value``; a value the door does not take is a
    ConfigError naming the ones it does."""
    if value not in allowed:
        raise ConfigError(f"{setting} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return Blocking(ON_BLOCK[value], template)


def check_mode(mode: Any) -> None:
    """A door's ``mode=`` is checked when the door is built, not on its first check."""
    if mode is not None and mode not in get_args(Mode):
        raise ConfigError(f"mode must be one of {', '.join(get_args(Mode))}, got {mode!r}")


def resolve_judge(judge: OmniGuard | None) -> OmniGuard:
    """The judge handed in, else the process-wide shared one."""
    return judge if judge is not None else OmniGuard.shared()


class JudgeRef:
    """The judge a door was handed, else the shared one, resolved on first use and then kept
    (``OmniGuard.shared()`` reads env and YAML: not once per call)."""

    def __init__(self, judge: OmniGuard | None) -> None:
        self.given = judge
        self._resolved = judge

    def __call__(self) -> OmniGuard:
        if self._resolved is None:
            self._resolved = resolve_judge(self.given)
        return self._resolved


def judge_argument(positional: tuple[Any, ...], judge: OmniGuard | None, owner: str) -> OmniGuard | None:
    """``judge=`` as a keyword; a judge passed by position still works (deprecated)."""
    if not positional:
        return judge
    if len(positional) > 1 or judge is not None:
        raise ConfigError(f"{owner} takes the judge once, as judge=")
    warnings.warn(f"pass the judge to {owner} as judge=...; by position is deprecated", DeprecationWarning,
                  stacklevel=3)
    return positional[0]  # type: ignore[no-any-return]


def verdict_metadata(verdict: Verdict, stage: Stage, **extra: Any) -> dict[str, Any]:
    """The verdict as it goes into node and response metadata: the core's summary JSON, plus a
    door's own fields (``blocked``, the stream ``window``)."""
    return {**summarize(verdict, stage).to_json(), **extra}
