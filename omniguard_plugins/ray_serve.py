"""The judge as a Ray Serve application: replicas, autoscaling, health and restarts from Ray.

Each replica holds one judge (the same :class:`~omniguard_plugins.OmniGuard` with its
micro-batcher, on a GPU with the transformers backend, or in front of a vLLM engine with the
openai backend) and serves the same FastAPI app as ``omniguard serve``: ``/v1/guard``,
``/v1/moderations``, ``/v1/chat/completions`` (judge and gateway), LiteLLM's route, ``/healthz``,
``/metrics``, with the same auth and caps. Ray Serve adds what one process cannot: replicas
placed on GPUs, autoscaling on ongoing requests, a proxy on every node, health checks that
restart a broken judge, and KubeRay on Kubernetes.

    serve run omniguard_plugins.ray_serve:build_app model=/models/OmniGuard-7B num_replicas=2 num_gpus=1

``build_app(args)`` takes the settings of ``omniguard serve`` (``model``, ``backend``,
``base_url``, ``device``, ``dtype``, ``max_batch``, ``max_wait_ms``, ``max_queued``, ``config``,
``token``, ``token_file``, ``request_timeout``, ``served_model_name``, ``judge_model_name``,
``upstream``, ``upstream_key``, ``max_body_bytes``, ``max_concurrency_per_client``) and the Serve
ones: ``num_replicas`` (an int, or ``"auto"``), ``autoscaling_config`` (a dict, Serve's own
keys), ``num_gpus`` and ``num_cpus`` per replica, ``max_ongoing_requests`` (default: the judge's
admission budget, ``max_queued + max_batch``, so Serve never routes a replica more than it will
admit), ``max_queued_requests`` (past it the proxy answers 503 at once instead of queueing) and
``health_check_period_s``. Nothing in the core imports Ray; install ``omniguard-plugins[ray]``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["ReplicaSettings", "build_app", "replica_settings"]

#: judge settings passed to JudgeConfig.load (the same names as ``omniguard serve``'s options)
_JUDGE_KEYS = ("model", "backend", "base_url", "device", "dtype", "max_batch", "max_wait_ms", "max_queued",
               "max_text_chars")
_INT_KEYS = {"max_batch", "max_queued", "max_text_chars", "max_body_bytes", "max_concurrency_per_client",
             "max_ongoing_requests", "max_queued_requests"}
_FLOAT_KEYS = {"max_wait_ms", "request_timeout", "num_gpus", "num_cpus", "health_check_period_s"}


@dataclass(frozen=True)
class ReplicaSettings:
    """What each replica needs to build its judge and app (picklable: it travels to the actor)."""

    judge: Mapping[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    tokens: tuple[str, ...] = ()
    #: read on the replica (the file is a secret mounted where replicas run, not where the app is built)
    token_file: str | None = None
    request_timeout_s: float | None = None
    served_model_name: str | None = None
    judge_model_name: str = "omniguard-judge"
    upstream: str | None = None
    upstream_key: str | None = None
    max_body_bytes: int | None = None
    max_concurrency_per_client: int = 0
    #: for tests and plugins: "module:function" returning the Backend from the JudgeConfig
    backend_factory: str | None = None


def replica_settings(args: Mapping[str, Any]) -> tuple[ReplicaSettings, dict[str, Any]]:
    """Split ``serve run`` arguments (strings from the command line, or typed from a config
    file) into the replica's settings and the deployment's options. Unknown keys are a
    ConfigError naming them: a typo must not be ignored on a cluster."""
    values = {k: _typed(k, v) for k, v in args.items() if v is not None}
    judge = {k: values.pop(k) for k in _JUDGE_KEYS if k in values}
    replica = ReplicaSettings(
        judge=judge,
        config_file=values.pop("config", None),
        tokens=(str(values.pop("token")),) if "token" in values else (),
        token_file=values.pop("token_file", None),
        request_timeout_s=values.pop("request_timeout", None),
        served_model_name=values.pop("served_model_name", None),
        judge_model_name=str(values.pop("judge_model_name", "omniguard-judge")),
        upstream=values.pop("upstream", None) or os.environ.get("OMNIGUARD_UPSTREAM"),
        upstream_key=values.pop("upstream_key", None) or os.environ.get("OMNIGUARD_UPSTREAM_KEY"),
        max_body_bytes=values.pop("max_body_bytes", None),
        max_concurrency_per_client=int(values.pop("max_concurrency_per_client", 0)),
        backend_factory=values.pop("backend_factory", None),
    )
    options = _deployment_options(values, replica)
    if values:
        known = sorted({*_JUDGE_KEYS, *(f.name for f in fields(ReplicaSettings)), "token", "token_file", "config",
                        "request_timeout", *_SERVE_KEYS})
        raise ConfigError(f"unknown setting(s) for build_app: {', '.join(sorted(values))}; known: {', '.join(known)}")
    return replica, options


_SERVE_KEYS = ("num_replicas", "autoscaling_config", "num_gpus", "num_cpus", "max_ongoing_requests",
               "max_queued_requests", "health_check_period_s", "name")


def _deployment_options(values: dict[str, Any], replica: ReplicaSettings) -> dict[str, Any]:
    from .config import JudgeConfig

    config = JudgeConfig.load(replica.config_file, env={}, **replica.judge)
    budget = (config.max_queued or 256) + config.max_batch
    max_ongoing = int(values.pop("max_ongoing_requests", budget))
    options: dict[str, Any] = {
        "name": str(values.pop("name", "omniguard")),
        "max_ongoing_requests": max_ongoing,
        "max_queued_requests": int(values.pop("max_queued_requests", max_ongoing)),
        "health_check_period_s": float(values.pop("health_check_period_s", 5.0)),
        "ray_actor_options": {"num_gpus": float(values.pop("num_gpus", 0.0)),
                              "num_cpus": float(values.pop("num_cpus", 1.0))},
    }
    autoscaling = values.pop("autoscaling_config", None)
    replicas = values.pop("num_replicas", None)
    if autoscaling is not None and replicas is not None:
        raise ConfigError("give num_replicas or autoscaling_config, not both")
    if autoscaling is not None:
        if not isinstance(autoscaling, Mapping):
            raise ConfigError("autoscaling_config must be a mapping of Serve's autoscaling keys")
        options["autoscaling_config"] = dict(autoscaling)
    elif replicas is not None:
        options["num_replicas"] = replicas if replicas == "auto" else int(replicas)
    return options


def _typed(key: str, value: Any) -> Any:
    """``serve run`` passes every argument as a string; read numbers as numbers."""
    if not isinstance(value, str):
        return value
    try:
        if key in _INT_KEYS:
            return int(value)
        if key in _FLOAT_KEYS:
            return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if key == "num_replicas" and value != "auto":
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"num_replicas must be an int or 'auto', got {value!r}") from None
    return value


class OmniGuardReplica:
    """One replica: one judge and the ``omniguard serve`` app around it. Serve calls
    :meth:`check_health` every ``health_check_period_s``; a broken judge (worker gone, backend
    failing) raises there, and Serve replaces the replica."""

    def __init__(self, settings: ReplicaSettings) -> None:
        from .config import JudgeConfig
        from .judge import OmniGuard
        from .server.app import DEFAULT_MAX_BODY_BYTES, create_app

        tokens = list(settings.tokens)
        if settings.token_file:
            from .server.cli import read_tokens

            tokens.extend(read_tokens(Path(settings.token_file)))
        config = JudgeConfig.load(settings.config_file, **settings.judge)
        backend = _factory(settings.backend_factory)(config) if settings.backend_factory else None
        self.judge = OmniGuard(config, backend=backend)
        self._app = create_app(
            self.judge, tokens=tokens, max_body_bytes=settings.max_body_bytes or DEFAULT_MAX_BODY_BYTES,
            request_timeout_s=settings.request_timeout_s, model_name=settings.served_model_name,
            judge_model_name=settings.judge_model_name, max_concurrency_per_client=settings.max_concurrency_per_client,
            upstream=settings.upstream, upstream_key=settings.upstream_key,
        )

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    def check_health(self) -> None:
        """Raise when the judge is broken, so Serve restarts this replica. Overloaded is
        healthy: the replica refuses fast and Serve's router sends work elsewhere."""
        if not self.judge.loaded:
            return  # still loading in the app's lifespan
        health = self.judge.batcher.health()
        if health.state == "broken":
            raise RuntimeError(f"omniguard judge broken: {health.reason or 'no reason given'}")


def build_app(args: Mapping[str, Any]) -> Any:
    """The Serve application for ``serve run omniguard_plugins.ray_serve:build_app key=value ...``
    (or ``import_path`` plus ``args`` in a Serve config file)."""
    try:
        from ray import serve
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("Ray Serve is missing; install it with: pip install 'omniguard-plugins[ray]'") from exc
    replica, options = replica_settings(args)
    ingress = serve.ingress()(OmniGuardReplica)
    # the decorator form: Ray's annotation of serve.deployment(cls, **options) says it returns the decorator
    return serve.deployment(**options)(ingress).bind(replica)


def _factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"backend_factory must be MODULE:FUNCTION, got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load backend_factory {spec}: {exc}") from None
