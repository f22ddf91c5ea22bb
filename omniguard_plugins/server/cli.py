"""``omniguard serve``: one judge process that many workers share over HTTP."""

from __future__ import annotations

import importlib
from typing import Any

import click

from ..errors import OmniGuardError

__all__ = ["serve"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="OMNIGUARD_HOST", help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, envvar="OMNIGUARD_PORT", help="Port to bind.")
@click.option("--model", default=None, help="Checkpoint (HF id or local path); default OMNIGUARD_MODEL or OmniGuard-3B.")
@click.option("--backend", default=None, type=click.Choice(["auto", "transformers", "openai"]),
              help="Where the model runs: in this process, or behind --base-url (e.g. vLLM replicas).")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoints, comma-separated (openai backend).")
@click.option("--device", default=None, help="cuda, cuda:1, cpu or auto.")
@click.option("--dtype", default=None, help="bfloat16, float16, float32 or auto.")
@click.option("--max-batch", default=None, type=int, help="Largest micro-batch (default 16).")
@click.option("--max-wait-ms", default=None, type=float, help="How long a batch waits for company (default 5).")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="YAML judge settings (also OMNIGUARD_CONFIG).")
@click.option("--token", default=None, envvar="OMNIGUARD_TOKEN",
              help="Require 'Authorization: Bearer <token>' on /v1/* (env OMNIGUARD_TOKEN).")
@click.option("--max-body-bytes", default=None, type=int, help="Refuse larger request bodies with 413 (default 96 MiB).")
@click.option("--request-timeout", default=None, type=float,
              help="Seconds before a request answers 504 (default: the judge's timeout_s).")
@click.option("--served-model-name", default=None, help="Model name reported by /v1/models and in completions.")
@click.option("--judge-model-name", default="omniguard-judge", show_default=True,
              help="Chat completions for this model name judge their messages and answer 'safe' or "
                   "'unsafe\\nS1,S9' (Llama Guard's short form), e.g. for NeMo's content-safety rail.")
@click.option("--backend-factory", default=None, metavar="MODULE:FUNCTION",
              help="For tests and plugins: FUNCTION(config) returns the Backend to serve.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every HTTP request.")
def serve(
    host: str, port: int, model: str | None, backend: str | None, base_url: str | None, device: str | None,
    dtype: str | None, max_batch: int | None, max_wait_ms: float | None, config_file: str | None,
    token: str | None, max_body_bytes: int | None, request_timeout: float | None, served_model_name: str | None,
    judge_model_name: str, backend_factory: str | None, log_level: str, access_log: bool,
) -> None:
    """Serve the judge over HTTP: /v1/guard, /v1/chat/completions, /healthz, /metrics."""
    try:
        import uvicorn

        from ..config import JudgeConfig
        from ..judge import OmniGuard
        from .app import DEFAULT_MAX_BODY_BYTES, create_app
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is missing; install the server with: pip install 'omniguard-plugins[serve]'")

    try:
        config = JudgeConfig.load(config_file, model=model, backend=backend, base_url=base_url, device=device,
                                  dtype=dtype, max_batch=max_batch, max_wait_ms=max_wait_ms)
        custom = _load_factory(backend_factory)(config) if backend_factory else None
        judge = OmniGuard(config, backend=custom).load()
    except OmniGuardError as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None

    app = create_app(judge, token=token, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
                     request_timeout_s=request_timeout, model_name=served_model_name, judge_model_name=judge_model_name)
    click.echo(f"omniguard: serving {served_model_name or judge.backend.model_id} on http://{host}:{port}"
               f"{' (token required)' if token else ''}", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
    finally:
        judge.close()


def _load_factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter("use MODULE:FUNCTION, e.g. my_tests.backends:echo", param_hint="--backend-factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {spec}: {exc}", param_hint="--backend-factory") from None
    if not callable(factory):
        raise click.BadParameter(f"{spec} is not callable", param_hint="--backend-factory")
    return factory
