"""The guarded gateway's client for its upstream LLM (vLLM or any OpenAI-compatible server).

The gateway speaks to the upstream with its own key, never the client's token. Whatever goes
wrong upstream becomes a :class:`~omniguard_plugins.server.serving.ServingError` with a
one-line reason (mapped to OpenAI's error shape in app.py): the upstream's own 4xx errors keep
their status and fields (a missing model is the client's to fix), a refused gateway key or a
5xx is a 502, an unreachable upstream a 502 and a slow one a 504.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..errors import ConfigError
from .serving import ServingError

__all__ = ["DEFAULT_UPSTREAM_TIMEOUT_S", "Upstream"]

#: an LLM may take minutes for a long answer; connecting should not
DEFAULT_UPSTREAM_TIMEOUT_S = 600.0


class Upstream:
    """``POST {url}/chat/completions`` on the upstream, whole or streamed."""

    def __init__(self, url: str, key: str | None = None, *, timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"the upstream must be an http(s) URL such as http://vllm:8000/v1, got {url!r}")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0))

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send(body, stream=False)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ServingError(502, "the upstream LLM's answer is not a chat completion", type="server_error",
                               code="upstream_error")
        return data

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The upstream's ``chat.completion.chunk`` objects. The response is opened here, so an
        upstream error is raised before the client sees a 200 stream; the connection closes
        when the returned iterator is closed (a block stops the upstream at once)."""
        return _chunks(await self._send(body, stream=True))

    async def _send(self, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        request = self._client.build_request("POST", f"{self.url}/chat/completions", json=body)
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise ServingError(504, "the upstream LLM did not answer in time", type="timeout_error",
                               code="upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise _upstream_error(response.status_code, content)
        return response

    async def aclose(self) -> None:
        await self._client.aclose()


async def _chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # comments, event names and keep-alives carry no chunk
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ServingError(502, "the upstream LLM sent a stream event that is not JSON",
                                   type="server_error", code="upstream_error") from None
            if isinstance(chunk, dict) and chunk.get("error"):
                raise _upstream_error(502, json.dumps(chunk).encode())
            if isinstance(chunk, dict):
                yield chunk
    except httpx.TimeoutException:
        raise ServingError(504, "the upstream LLM stopped streaming", type="timeout_error",
                           code="upstream_timeout") from None
    except httpx.HTTPError as exc:
        raise _unreachable(exc) from None
    finally:
        await response.aclose()


def _unreachable(exc: httpx.HTTPError) -> ServingError:
    return ServingError(502, f"the upstream LLM is unreachable ({type(exc).__name__})", type="server_error",
                        code="upstream_unreachable")


def _upstream_error(status: int, content: bytes) -> ServingError:
    """The upstream's error, kept where it is the client's to fix (4xx), else a 502."""
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {"message": str(error) if error else ""}
    message = str(error.get("message") or f"status {status}").splitlines()[0][:200]
    if status in (401, 403):
        return ServingError(502, f"the upstream LLM refused the gateway's key ({status}: {message}); "
                                 "check --upstream-key", type="server_error", code="upstream_auth")
    if 400 <= status < 500:
        return ServingError(status, f"upstream: {message}", type=str(error.get("type") or "invalid_request_error"),
                            param=error.get("param") if isinstance(error.get("param"), str) else None,
                            code=str(error["code"]) if error.get("code") else None)
    return ServingError(502, f"the upstream LLM failed ({status}: {message})", type="server_error",
                        code="upstream_error")
