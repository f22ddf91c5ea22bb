"""``omniguard serve``: the judge behind HTTP, so many processes share one model.

    from omniguard_plugins.server import create_app
    app = create_app(judge, token="s3cret")      # any ASGI server, or mount it in your app

Routes: ``POST /v1/guard``, ``POST /v1/chat/completions`` (the checkpoint as an OpenAI-compatible
chat model, as vLLM serves it), ``GET /v1/models``, ``GET /healthz``, ``GET /metrics``.
Needs the ``[serve]`` extra (fastapi, uvicorn, prometheus-client).
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY_BYTES, create_app, error_response
from .serving import GuardServing, ServingError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "GuardServing", "ServingError", "create_app", "error_response"]
