"""Where the guardrail's verdicts come from: the judge in this process, or ``omniguard serve``.

Both take OpenAI chat messages (what LiteLLM hands its hooks) and a direction, and give a
:class:`~omniguard_plugins.Verdict`. A check that cannot be made is a verdict too, never an
exception: in process the judge's ``on_error`` decides (block by default); over HTTP an
unreachable or failing server blocks unless ``fail_on_error=False``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.doors import VerdictSummary
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.openai_messages import conversation_from_openai

__all__ = ["Checker", "LocalChecker", "RemoteChecker"]

Messages = Sequence[Mapping[str, Any]]


class Checker(Protocol):
    async def check(self, messages: Messages, direction: str) -> Verdict: ...


class LocalChecker:
    """The judge in this process (``OmniGuard.shared()`` unless given one)."""

    def __init__(self, judge: OmniGuard | None = None) -> None:
        self._judge = judge

    @property
    def judge(self) -> OmniGuard:
        if self._judge is None:
            self._judge = OmniGuard.shared()
        return self._judge

    async def check(self, messages: Messages, direction: str) -> Verdict:
        # converted inside the check, so a part the judge cannot read meets on_error like any failure
        return await self.judge.acheck(lambda: conversation_from_openai(messages),
                                       direction=direction)  # type: ignore[arg-type]


class RemoteChecker:
    """``POST /v1/guard`` on an ``omniguard serve`` (``api_base`` with or without ``/v1``)."""

    def __init__(self, api_base: str, api_key: str | None = None, *, timeout_s: float = 60.0,
                 fail_on_error: bool = True) -> None:
        root = api_base.rstrip("/")
        self.url = (root[:-3] if root.endswith("/v1") else root) + "/v1/guard"
        self.fail_on_error = fail_on_error
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout_s)

    async def check(self, messages: Messages, direction: str) -> Verdict:
        try:
            response = await self._client.post(self.url, json={"messages": list(messages),
                                                               "direction": direction})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return self._failed(f"omniguard serve unreachable ({type(exc).__name__})")
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            reason = error.get("message") if isinstance(error, dict) else f"status {response.status_code}"
            return self._failed(f"omniguard serve answered {response.status_code}: {reason}")
        # /v1/guard writes each category as {code, name}; the summary reads codes
        codes = [c.get("code") if isinstance(c, Mapping) else c for c in body.get("categories") or []]
        try:
            summary = VerdictSummary.from_json({**body, "categories": codes})
        except ConfigError as exc:
            return self._failed(f"omniguard serve answered something that is not a verdict ({exc})")
        return summary.to_verdict().with_(direction=direction)

    def _failed(self, reason: str) -> Verdict:
        return Verdict(safe=not self.fail_on_error, error=f"remote: {reason}")

    async def aclose(self) -> None:
        await self._client.aclose()
