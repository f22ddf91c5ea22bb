"""``omniguard serve``: one judge process that many workers share over HTTP."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from ..errors import OmniGuardError

__all__ = ["DEFAULT_MAX_CONNECTIONS", "read_tokens", "serve"]

#: uvicorn's ``limit_concurrency``: far above any burst admission lets in (which refuses with 429
#: and Retry-After), low enough that a connection flood is refused before it costs memory
DEFAULT_MAX_CONNECTIONS = 2048


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="OMNIGUARD_HOST", help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, envvar="OMNIGUARD_PORT", help="Port to bind.")
@click.option("--model", default=None,
              help="Checkpoint (HF id or local path); default OMNIGUARD_MODEL or OmniGuard-3B.")
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
              help="Require 'Authorization: Bearer <token>' on /v1/*. Prefer env OMNIGUARD_TOKEN or "
                   "--token-file: a token on the command line shows in ps.")
@click.option("--token-file", default=None, envvar="OMNIGUARD_TOKEN_FILE", type=click.Path(dir_okay=False),
              help="File of accepted tokens, one per line ('#' comments); each is one client for "
                   "--max-concurrency-per-client (env OMNIGUARD_TOKEN_FILE).")
@click.option("--max-concurrency-per-client", default=0, show_default=True, type=click.IntRange(min=0),
              help="Requests one token (or address) may have in flight; more get 429. 0: no limit.")
@click.option("--max-queued", default=None, type=click.IntRange(min=0),
              help="Model requests waiting for the judge before new ones get 429 (default 256; 0: unbounded).")
@click.option("--max-queue-delay-ms", default=None, type=click.FloatRange(min=0),
              help="Refuse (429, at once, as the request arrives) one that would wait longer than this for the "
                   "model, so admitted ones keep their latency under overload. Default: 2.5 recent batch "
                   "times (at least 500 ms, at most a quarter of the judge's timeout); 0: off, only --max-queued "
                   "refuses (also OMNIGUARD_MAX_QUEUE_DELAY_S, in seconds).")
@click.option("--max-connections", default=DEFAULT_MAX_CONNECTIONS, show_default=True, type=click.IntRange(min=0),
              help="Open connections (and requests) the server takes at once; past it uvicorn answers 503 "
                   "before reading anything (a connection flood). 0: no cap.")
@click.option("--max-text-chars", default=None, type=click.IntRange(min=0),
              help="Characters of text per request; more get 413 (default 65536; 0: no cap).")
@click.option("--body-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a client has to send its request body (slow clients get 408).")
@click.option("--max-body-bytes", default=None, type=int,
              help="Refuse larger request bodies with 413 (default 96 MiB).")
@click.option("--request-timeout", default=None, type=float,
              help="Seconds before a request answers 504 (default: the judge's timeout_s).")
@click.option("--served-model-name", default=None, help="Model name reported by /v1/models and in completions.")
@click.option("--judge-model-name", default="omniguard-judge", show_default=True,
              help="Chat completions for this model name judge their messages and answer 'safe' or "
                   "'unsafe\\nS1,S9' (Llama Guard's short form), e.g. for NeMo's content-safety rail.")
@click.option("--upstream", default=None, envvar="OMNIGUARD_UPSTREAM", metavar="URL",
              help="Guarded gateway: chat completions for any other model go to this OpenAI-compatible "
                   "server (e.g. http://vllm:8000/v1), judged on the way in and out.")
@click.option("--upstream-key", default=None, envvar="OMNIGUARD_UPSTREAM_KEY",
              help="The gateway's own key for --upstream (prefer env OMNIGUARD_UPSTREAM_KEY).")
@click.option("--upstream-timeout", default=None, type=click.FloatRange(min=0.001), envvar="OMNIGUARD_UPSTREAM_TIMEOUT",
              help="Seconds the gateway waits for the input check and the upstream's answer (whole, the start "
                   "of a stream, and each gap between chunks) before it answers 504 and cancels the upstream "
                   "request (default: --request-timeout).")
@click.option("--backend-factory", default=None, metavar="MODULE:FUNCTION",
              help="For tests and plugins: FUNCTION(config) returns the Backend to serve.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every HTTP request.")
def serve(
    host: str, port: int, model: str | None, backend: str | None, base_url: str | None, device: str | None,
    dtype: str | None, max_batch: int | None, max_wait_ms: float | None, config_file: str | None,
    token: str | None, token_file: str | None, max_concurrency_per_client: int, max_queued: int | None,
    max_queue_delay_ms: float | None, max_connections: int, max_text_chars: int | None, body_timeout: float,
    max_body_bytes: int | None, request_timeout: float | None,
    served_model_name: str | None, judge_model_name: str, backend_factory: str | None, log_level: str,
    access_log: bool, upstream: str | None = None, upstream_key: str | None = None,
    upstream_timeout: float | None = None,
) -> None:
    """Serve the judge over HTTP: /v1/guard, /v1/moderations, /v1/chat/completions (a guarded
    gateway with --upstream), LiteLLM's guardrail API, /healthz, /metrics."""
    try:
        import uvicorn

        from ..config import JudgeConfig
        from ..judge import OmniGuard
        from .app import DEFAULT_MAX_BODY_BYTES, create_app
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is missing; install the server with: "
                                   "pip install 'omniguard-plugins[serve]'") from None

    if token and click.get_current_context().get_parameter_source("token") == click.core.ParameterSource.COMMANDLINE:
        click.echo("omniguard: warning: --token on the command line is visible to other users (ps); "
                   "use OMNIGUARD_TOKEN or --token-file", err=True)
    tokens = ([token] if token else []) + (read_tokens(Path(token_file)) if token_file else [])
    try:
        config = JudgeConfig.load(config_file, model=model, backend=backend, base_url=base_url, device=device,
                                  dtype=dtype, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queued=max_queued,
                                  max_text_chars=max_text_chars,
                                  max_queue_delay_s=None if max_queue_delay_ms is None else max_queue_delay_ms / 1000.0)
        custom = _load_factory(backend_factory)(config) if backend_factory else None
        judge = OmniGuard(config, backend=custom).load()
    except OmniGuardError as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None

    if upstream and not upstream.startswith(("http://", "https://")):
        raise click.BadParameter(f"use an http(s) URL such as http://vllm:8000/v1, got {upstream!r}",
                                 param_hint="--upstream")
    app = create_app(judge, tokens=tokens, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
                     request_timeout_s=request_timeout, model_name=served_model_name, judge_model_name=judge_model_name,
                     max_concurrency_per_client=max_concurrency_per_client, body_timeout_s=body_timeout,
                     upstream=upstream, upstream_key=upstream_key, upstream_timeout_s=upstream_timeout)
    click.echo(f"omniguard: serving {served_model_name or judge.backend.model_id} on http://{host}:{port}"
               f"{f' ({len(tokens)} token(s) accepted)' if tokens else ''}", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log,
                    limit_concurrency=max_connections or None)
    finally:
        judge.close()


def read_tokens(path: Path) -> list[str]:
    """Tokens from a file, one per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {type(exc).__name__}", param_hint="--token-file") from None
    tokens = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        raise click.BadParameter(f"{path} holds no token (one per line)", param_hint="--token-file")
    if any(len(t) < 8 or any(c.isspace() for c in t) for t in tokens):
        raise click.BadParameter(f"{path}: every token needs 8 or more characters and no spaces",
                                 param_hint="--token-file")
    return tokens


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
