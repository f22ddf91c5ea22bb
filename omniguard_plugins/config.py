"""Judge configuration: one frozen object, from arguments, ``OMNIGUARD_*`` variables or YAML.

Precedence: explicit arguments > environment > YAML file (``OMNIGUARD_CONFIG``) > defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError
from .media import MediaLimits
from .policy import Policy
from .prompt import DEFAULT_MAX_TEXT_CHARS
from .verdict import Mode

if TYPE_CHECKING:
    from ._localize import Localize
    from .backends.transformers.fast_paths import FastPaths

__all__ = ["DEFAULT_MODEL", "JudgeConfig", "OnError"]

DEFAULT_MODEL = "anonymous-omniguard/OmniGuard-3B"

OnError = Literal["block", "allow", "raise"]
_MODES = ("verdict", "critique", "score")


@dataclass(frozen=True)
class JudgeConfig:
    model: str = DEFAULT_MODEL
    #: "transformers" (in process), "openai" (an OpenAI-compatible server), or "auto":
    #: openai when ``base_url`` is set, else transformers
    backend: str = "auto"
    #: one or more OpenAI-compatible endpoints (``omniguard serve`` or vLLM), comma-separated
    base_url: str | None = None
    api_key: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch: int = 16
    max_wait_ms: float = 5.0
    mode: Mode = "verdict"
    #: in verdict mode, generate a critique only for unsafe verdicts
    explain_unsafe: bool = False
    #: max new tokens for critiques
    max_new_tokens: int = 256
    #: score mode: P(unsafe) at or above this is unsafe
    threshold: float = 0.5
    policy: Policy = field(default_factory=Policy)
    on_error: OnError = "block"
    timeout_s: float = 120.0
    cache_size: int = 4096
    #: admission control: model requests waiting for the micro-batcher beyond this are refused
    #: with OverloadedError (a blocking verdict; the server answers 429). 0: unbounded
    max_queued: int = 256
    #: ... and decoded media bytes held by waiting requests (memory stays bounded). 0: unbounded
    max_queued_media_bytes: int = 1 << 30
    #: admission on arrival (omniguard_plugins.admission): a check (or a server request, from the
    #: moment it arrives) that would wait longer than this for the model is refused at once with
    #: OverloadedError (a blocking verdict in process; 429 with Retry-After from the server).
    #: None: derived, 2.5 recent batch times (two batches waiting, half a batch of slack; 0.5 s at
    #: least, timeout_s / 4 at most); 0: off, callers wait (only max_queued refuses)
    max_queue_delay_s: float | None = None
    #: characters of text in one check, refused (TextTooLarge) before rendering or tokenising.
    #: 0: no cap (the backend's token cap against the model's context still applies)
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    media: MediaLimits = field(default_factory=MediaLimits)
    #: transformers backend on CUDA: decode over static KV buffers, replaying captured CUDA
    #: graphs. Off by default until a GPU benchmark shows it pays (bench/RESULTS.md)
    decode_graphs: bool = False
    #: the transformers backend's speed paths (each gives the same answers; see its FastPaths), from
    #: YAML ``fast_paths: {prefix-cache: off}`` or ``OMNIGUARD_FAST_PATHS="prefix-cache=off"``.
    #: Its module is imported when a configuration is built, not when the package is
    fast_paths: FastPaths = field(default_factory=lambda: _fast_paths_type()())
    #: fill an unsafe verdict's ``evidence`` (which part, characters, seconds) by judging its
    #: parts apart and bisecting the unsafe ones; each check may also ask with ``localize=``
    localize: bool = False
    #: extra checks one localized verdict may spend (evidence it stopped narrowing says ``capped``)
    localize_max_checks: int = 48
    #: the finest evidence: sentences of text, seconds of audio or video
    localize_sentences: int = 1
    localize_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {', '.join(_MODES)}, got {self.mode!r}")
        if self.on_error not in ("block", "allow", "raise"):
            raise ConfigError(f"on_error must be block, allow or raise, got {self.on_error!r}")
        if self.max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("threshold must be between 0 and 1")
        if self.timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")
        for bound in ("max_queued", "max_queued_media_bytes", "max_text_chars"):
            if getattr(self, bound) < 0:
                raise ConfigError(f"{bound} must be 0 (unbounded) or positive, got {getattr(self, bound)}")
        if self.max_queue_delay_s is not None and not self.max_queue_delay_s >= 0:
            raise ConfigError(f"max_queue_delay_s must be 0 (off), positive, or unset (derived), "
                              f"got {self.max_queue_delay_s}")
        object.__setattr__(self, "fast_paths", _fast_paths_type().coerce(self.fast_paths))
        self.localize_limits  # noqa: B018 - a resolution or cap that cannot work is refused now

    @classmethod
    def load(
        cls, config_file: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> JudgeConfig:
        """Defaults < YAML (``config_file`` or ``OMNIGUARD_CONFIG``) < environment < overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_file or env.get("OMNIGUARD_CONFIG")
        if path:
            values.update(_from_yaml(Path(path)))
        values.update(_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> JudgeConfig:
        known = {f.name for f in fields(cls)}
        media_known = {f.name for f in fields(MediaLimits)}
        top: dict[str, Any] = {}
        media: dict[str, Any] = {}
        for key, value in values.items():
            if key in known:
                top[key] = value
            elif key in media_known:
                media[key] = value
            else:
                raise ConfigError(f"unknown judge setting {key!r}")
        if "policy" in top:
            top["policy"] = Policy.coerce(top["policy"])
        if isinstance(top.get("media"), Mapping):
            media = {**top["media"], **media}
            top.pop("media")
        if media:
            given = top.get("media")
            base = given if isinstance(given, MediaLimits) else MediaLimits()
            try:
                top["media"] = dataclasses.replace(base, **_coerce_media(media))
            except TypeError as exc:
                raise ConfigError(str(exc)) from None
        return cls(**_coerce_top(top))

    def replace(self, **changes: Any) -> JudgeConfig:
        return JudgeConfig.from_mapping({**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})

    @property
    def localize_limits(self) -> Localize:
        from ._localize import Localize

        return Localize(self.localize_sentences, self.localize_seconds, self.localize_max_checks)

    @property
    def resolved_backend(self) -> str:
        if self.backend == "auto":
            return "openai" if self.base_url else "transformers"
        return self.backend


def _coerce_top(values: dict[str, Any]) -> dict[str, Any]:
    types: dict[str, Callable[[str], Any]] = {
        "max_batch": int, "max_wait_ms": float, "max_new_tokens": int, "threshold": float,
        "timeout_s": float, "cache_size": int, "explain_unsafe": _bool, "decode_graphs": _bool,
        "max_queued": int, "max_queued_media_bytes": int, "max_text_chars": int,
        "max_queue_delay_s": _delay, "localize": _bool, "localize_max_checks": int,
        "localize_sentences": int, "localize_seconds": float}
    out = dict(values)
    for key, conv in types.items():
        if key in out and isinstance(out[key], str):
            try:
                out[key] = conv(out[key])
            except ValueError:
                kind = getattr(conv, "__name__", "value").strip("_")
                raise ConfigError(f"{key} must be a {kind}, got {out[key]!r}") from None
    return out


def _coerce_media(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for f in fields(MediaLimits):
        if f.name in out and isinstance(out[f.name], str):
            raw = out[f.name]
            if f.name == "allow_urls":
                out[f.name] = _bool(raw)
            elif f.name == "url_allowlist":
                out[f.name] = tuple(h.strip() for h in raw.split(",") if h.strip())
            elif "int" in str(f.type):
                out[f.name] = int(raw)
            else:
                out[f.name] = float(raw)
        elif f.name == "url_allowlist" and f.name in out:
            out[f.name] = tuple(out[f.name])
    return out


def _fast_paths_type() -> type[FastPaths]:
    """The transformers backend's switches, imported when first needed: ``import omniguard_plugins``
    loads no backend module."""
    from .backends.transformers.fast_paths import FastPaths

    return FastPaths


def _delay(value: str) -> float | None:
    """``auto`` (derived), ``off`` (0) or seconds."""
    v = value.strip().lower()
    if v in ("auto", ""):
        return None
    return 0.0 if v in ("off", "none") else float(v)


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)


_ENV = {
    "OMNIGUARD_MODEL": "model",
    "OMNIGUARD_BACKEND": "backend",
    "OMNIGUARD_URL": "base_url",
    "OMNIGUARD_API_KEY": "api_key",
    "OMNIGUARD_DEVICE": "device",
    "OMNIGUARD_DTYPE": "dtype",
    "OMNIGUARD_MAX_BATCH": "max_batch",
    "OMNIGUARD_MAX_WAIT_MS": "max_wait_ms",
    "OMNIGUARD_MODE": "mode",
    "OMNIGUARD_EXPLAIN_UNSAFE": "explain_unsafe",
    "OMNIGUARD_ON_ERROR": "on_error",
    "OMNIGUARD_TIMEOUT_S": "timeout_s",
    "OMNIGUARD_CACHE_SIZE": "cache_size",
    "OMNIGUARD_THRESHOLD": "threshold",
    "OMNIGUARD_POLICY": "policy",
    "OMNIGUARD_ALLOW_URLS": "allow_urls",
    "OMNIGUARD_URL_ALLOWLIST": "url_allowlist",
    "OMNIGUARD_DECODE_GRAPHS": "decode_graphs",
    "OMNIGUARD_MAX_QUEUED": "max_queued",
    "OMNIGUARD_MAX_QUEUED_MEDIA_BYTES": "max_queued_media_bytes",
    "OMNIGUARD_MAX_QUEUE_DELAY_S": "max_queue_delay_s",
    "OMNIGUARD_MAX_TEXT_CHARS": "max_text_chars",
    "OMNIGUARD_FAST_PATHS": "fast_paths",
    "OMNIGUARD_LOCALIZE": "localize",
    "OMNIGUARD_LOCALIZE_MAX_CHECKS": "localize_max_checks",
}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {key: env[name] for name, key in _ENV.items() if env.get(name)}


def _from_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (check OMNIGUARD_CONFIG)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping of judge settings")
    return dict(data.get("judge", data))


def is_tiny_checkpoint(model: Any) -> bool:
    """Whether ``model`` names the tiny test checkpoint (its folder holds ``omniguard_tiny.json``):
    its verdicts are plumbing, never real safety judgements, and every report must say so."""
    if not model:
        return False
    try:
        return (Path(str(model)) / "omniguard_tiny.json").is_file()
    except OSError:
        return False


def checkpoint_revision(model: str) -> str | None:
    """The hub commit of a snapshot folder, else a short hash of a local folder's config and
    weight file sizes (enough to tell two checkpoints apart without reading gigabytes); None for
    a name that is not a folder (a model served elsewhere reports its own)."""
    commit = re.search(r"snapshots/([0-9a-f]{40})", model)
    if commit:
        return commit.group(1)
    path = Path(model)
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json" and f.stat().st_size < 1_000_000:
                h.update(f.read_bytes())
    return "local-" + h.hexdigest()[:12]
