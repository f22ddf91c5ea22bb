"""``omniguard serve``: the judge behind HTTP, so many processes share one model.

    from omniguard_plugins.server import create_app
    app = create_app(judge, token="s3cret")      # any ASGI server, or mount it in your app

Routes: ``POST /v1/guard``, ``POST /v1/moderations``, ``POST /v1/chat/completions`` (the
checkpoint as an OpenAI-compatible chat model, as vLLM serves it, or a guarded gateway with an
upstream), LiteLLM's guardrail API, ``GET /v1/models``, ``GET /healthz``, ``GET /metrics``.
Serving classes subclass :class:`ServingBase`.
Needs the ``[serve]`` extra (fastapi, uvicorn, prometheus-client).
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY_BYTES, create_app, error_response
from .serving import GuardServing, ServingBase, ServingError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "GuardServing", "ServingBase", "ServingError", "create_app", "error_response"]
