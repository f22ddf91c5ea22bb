"""Every exception omniguard-plugins raises, in one tree.

    OmniGuardError
    ├── ConfigError               a setting is missing or invalid
    ├── ModelLoadError            the checkpoint cannot be found or loaded
    ├── BackendError              the model backend failed while judging
    │   ├── JudgeTimeout          no verdict within timeout_s
    │   └── OverloadedError       the judge's queue is full: retry after ``retry_after_s``
    ├── ContentError              a message cannot be turned into a Conversation
    │   └── TextTooLarge          more text than ``max_text_chars`` in one check
    ├── MediaError                a media part cannot be read (names the part)
    │   ├── UnsupportedMedia      a format or source we do not accept
    │   ├── CorruptMedia          the bytes do not decode
    │   ├── MediaTooLarge         over a configured limit
    │   └── MediaFetchRefused     a URL that policy forbids fetching
    └── GuardViolation            (also a RuntimeError) content was blocked by a rail

Messages are one line and say what to do about the problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .verdict import Verdict

__all__ = [
    "BackendError",
    "ConfigError",
    "ContentError",
    "CorruptMedia",
    "GuardViolation",
    "JudgeTimeout",
    "MediaError",
    "MediaFetchRefused",
    "MediaTooLarge",
    "ModelLoadError",
    "OmniGuardError",
    "OverloadedError",
    "TextTooLarge",
    "UnsupportedMedia",
]


class OmniGuardError(Exception):
    """Base class; catch this to handle anything the guard raises."""

    #: short machine-readable kind, used in Verdict.error and metrics
    kind: str = "error"


class ConfigError(OmniGuardError, ValueError):
    kind = "config"


class ModelLoadError(OmniGuardError):
    kind = "model_load"


class BackendError(OmniGuardError):
    kind = "backend"


class JudgeTimeout(BackendError, TimeoutError):
    kind = "timeout"


class OverloadedError(BackendError):
    """Shed load: more work is queued than the judge's bounds allow. Nothing was judged, so
    under ``on_error="block"`` the verdict blocks; a server answers 429 with ``Retry-After``."""

    kind = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ContentError(OmniGuardError, ValueError):
    kind = "content"


class TextTooLarge(ContentError):
    """Refused before tokenising: one check's text is over ``max_text_chars``."""

    kind = "text_too_large"


class MediaError(OmniGuardError, ValueError):
    """A media part could not be used. ``part`` names it (e.g. ``"image #2"``)."""

    kind = "media"

    def __init__(self, reason: str, *, part: str | None = None) -> None:
        self.reason = reason
        self.part = part
        super().__init__(f"{part}: {reason}" if part else reason)

    def for_part(self, part: str) -> MediaError:
        """The same error, naming the part it came from (keeps the subclass)."""
        if self.part:
            return self
        err = type(self)(self.reason, part=part)
        err.__cause__ = self.__cause__ or self
        return err


class UnsupportedMedia(MediaError):
    kind = "unsupported_media"


class CorruptMedia(MediaError):
    kind = "corrupt_media"


class MediaTooLarge(MediaError):
    kind = "media_too_large"


class MediaFetchRefused(MediaError):
    kind = "media_fetch_refused"


class GuardViolation(OmniGuardError, RuntimeError):
    """Raised by a rail that blocks. Carries where it happened and why.

    ``stage`` is ``"input"``, ``"output"`` or ``"tool"``; ``verdict`` is the judge's
    Verdict; ``content`` is what was blocked (in the framework's own shape).
    """

    kind = "violation"

    def __init__(self, message: str, *, stage: str, verdict: Verdict, content: Any = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.verdict = verdict
        self.content = content
