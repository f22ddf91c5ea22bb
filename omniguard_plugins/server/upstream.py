"""The guarded gateway's client for its upstream LLM (vLLM or any OpenAI-compatible server).

The gateway speaks to the upstream with its own key, never the client's token. Whatever goes
wrong upstream becomes a :class:`~omniguard_plugins.server.serving.ServingError` with a
one-line reason (mapped to OpenAI's error shape in app.py): the upstream's own 4xx errors keep
their status and fields (a missing model is the client's to fix), a refused gateway key or a
5xx is a 502, an unreachable upstream a 502 and a slow one a 504.

``timeout_s`` bounds a whole answer, the opening of a stream (until its headers), and every
gap between two chunks of a stream. When it runs out the request is cancelled: the connection
to the upstream is closed, so the upstream sees the client go away and can stop generating.
"""

from __future__ import annotations

import asyncio
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
    """``POST {url}/chat/completions`` on the upstream, whole or streamed; ``GET {url}/models``."""

    def __init__(self, url: str, key: str | None = None, *, timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"the upstream must be an http(s) URL such as http://vllm:8000/v1, got {url!r}")
        if not timeout_s > 0:
            raise ConfigError(f"the upstream timeout must be positive seconds, got {timeout_s!r}")
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # httpx's own timeouts are a backstop; the asyncio deadlines below are the rule
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s + 1.0,
                                                                                connect=min(10.0, timeout_s)))

    async def complete(self, body: dict[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """The upstream's chat completion, within ``timeout_s`` (default: this client's)."""
        response = await self._within(self._send("POST", "/chat/completions", body, stream=False), timeout_s)
        data = _json(response)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) \
                or not all(isinstance(c, dict) for c in data["choices"]):
            raise ServingError(502, "the upstream LLM's answer is not a chat completion", type="server_error",
                               code="upstream_error")
        return data

    async def stream(self, body: dict[str, Any], *, timeout_s: float | None = None,
                     stall_s: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """The upstream's ``chat.completion.chunk`` objects. The response is opened here (within
        ``timeout_s``), so an upstream error is raised before the client sees a 200 stream; the
        connection closes when the returned iterator is closed (a block stops the upstream at
        once), and when the upstream sends no chunk for ``stall_s`` (a 504 ServingError from the
        iterator). Both default to this client's ``timeout_s``."""
        response = await self._within(self._send("POST", "/chat/completions", body, stream=True), timeout_s)
        return _chunks(response, stall_s or self.timeout_s)

    async def models(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The upstream's model list (``{"object": "list", "data": [...]}``)."""
        data = _json(await self._within(self._send("GET", "/models", None, stream=False), timeout_s))
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ServingError(502, "the upstream LLM's model list is not a list", type="server_error",
                               code="upstream_error")
        return data

    async def _within(self, sending: Any, timeout_s: float | None) -> httpx.Response:
        """Await ``sending`` for at most ``timeout_s``; past it the request is cancelled."""
        limit = self.timeout_s if timeout_s is None else max(0.0, timeout_s)
        try:
            async with asyncio.timeout(limit):
                response: httpx.Response = await sending
                return response
        except TimeoutError:
            raise _slow(f"the upstream LLM did not answer within {limit:g} s") from None

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool) -> httpx.Response:
        request = self._client.build_request(method, f"{self.url}{path}", json=body)
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise _slow(f"the upstream LLM did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise _upstream_error(response.status_code, content)
        return response

    async def aclose(self) -> None:
        await self._client.aclose()


async def _chunks(response: httpx.Response, stall_s: float) -> AsyncIterator[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    lines = response.aiter_lines()
    deadline = loop.time() + stall_s
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):  # never across a yield: only the read is bounded
                    line = await anext(lines)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _slow(f"the upstream LLM stopped streaming (no chunk for {stall_s:g} s)") from None
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
                deadline = loop.time() + stall_s
    except httpx.TimeoutException:
        raise _slow(f"the upstream LLM stopped streaming (no chunk for {stall_s:g} s)") from None
    except httpx.HTTPError as exc:
        raise _unreachable(exc) from None
    finally:
        await response.aclose()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _slow(message: str) -> ServingError:
    return ServingError(504, message, type="timeout_error", code="upstream_timeout")


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
