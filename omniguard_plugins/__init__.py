"""omniguard-plugins: one OmniGuard judge for every modality, behind thin framework adapters.

    from omniguard_plugins import OmniGuard
    judge = OmniGuard.shared()
    verdict = judge.check(user=["describe this", Image("photo.png")])
"""

from __future__ import annotations

from ._version import __version__
from .config import DEFAULT_MODEL, JudgeConfig
from .content import Audio, Conversation, Image, Part, Text, Turn, Video
from .errors import (
    BackendError,
    ConfigError,
    ContentError,
    CorruptMedia,
    GuardViolation,
    JudgeTimeout,
    MediaError,
    MediaFetchRefused,
    MediaTooLarge,
    ModelLoadError,
    OmniGuardError,
    OverloadedError,
    TextTooLarge,
    UnsupportedMedia,
)
from .judge import OmniGuard
from .media import MediaLimits
from .policy import DEFAULT_CATEGORIES, Category, Policy
from .verdict import Verdict

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_MODEL",
    "Audio",
    "BackendError",
    "Category",
    "ConfigError",
    "ContentError",
    "Conversation",
    "CorruptMedia",
    "GuardViolation",
    "Image",
    "JudgeConfig",
    "JudgeTimeout",
    "MediaError",
    "MediaFetchRefused",
    "MediaLimits",
    "MediaTooLarge",
    "ModelLoadError",
    "OmniGuard",
    "OmniGuardError",
    "OverloadedError",
    "Part",
    "Policy",
    "Text",
    "TextTooLarge",
    "Turn",
    "UnsupportedMedia",
    "Verdict",
    "Video",
    "__version__",
]
