"""``OmniGuardGuardrail``: OmniGuard as a LiteLLM custom guardrail.

One decision per hook, each a few lines:

- ``pre_call`` (``async_pre_call_hook``): judge the request before the LLM sees it;
- ``during_call`` (``async_moderation_hook``): the same check, run beside the LLM call;
- ``post_call`` (``async_post_call_success_hook``): judge the answer in the context of the
  request; streamed answers (``async_post_call_streaming_iterator_hook``, the proxy's hook)
  pass the core stream rail, so no chunk the judge has not passed reaches the client, and a
  block ends the stream with an OpenAI-shaped error event.

A block raises :class:`OmniGuardViolation` (LiteLLM's ``GuardrailRaisedException``: the
proxy answers 400, the SDK raises it to the caller). Verdicts come from the judge in this
process or, with ``api_base``, from ``omniguard serve`` (see :mod:`._checker`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from typing import Any

from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks

from omniguard_plugins import JudgeConfig, OmniGuard, Verdict
from omniguard_plugins.openai_answers import answer_text, delta_text, field
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate

from ._checker import Checker, LocalChecker, RemoteChecker

__all__ = ["OmniGuardGuardrail", "OmniGuardViolation"]

_HOOKS = [GuardrailEventHooks.pre_call, GuardrailEventHooks.during_call, GuardrailEventHooks.post_call]


class OmniGuardViolation(GuardrailRaisedException):
    """A request or answer OmniGuard blocked; ``verdict`` and ``stage`` say which and why."""

    def __init__(self, guardrail_name: str | None, stage: str, verdict: Verdict) -> None:
        what = "the request" if stage != "post_call" else "the answer"
        super().__init__(guardrail_name=guardrail_name, message=f"OmniGuard blocked {what}: {verdict.summary()}",
                         should_wrap_with_default_message=False, status_code=400,
                         blocked_content=not verdict.error)
        self.stage = stage
        self.verdict = verdict


class OmniGuardGuardrail(CustomGuardrail):
    """A LiteLLM guardrail backed by OmniGuard.

    ``judge``: an ``OmniGuard`` to use in process (default ``OmniGuard.shared()``, or one built
    from ``omniguard_config``, a YAML file of judge settings). ``api_base`` (+ ``api_key``):
    use ``omniguard serve`` instead; ``fail_on_error`` (default True) blocks when it cannot be
    reached. ``stream_settings``: how streamed answers are windowed. The rest (``guardrail_name``,
    ``event_hook``/``mode``, ``default_on``) is LiteLLM's; unknown config keys are ignored.
    """

    def __init__(self, *, judge: OmniGuard | None = None, api_base: str | None = None, api_key: str | None = None,
                 omniguard_config: str | None = None, fail_on_error: bool = True,
                 stream_settings: StreamSettings | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("supported_event_hooks", list(_HOOKS))
        super().__init__(**kwargs)
        self.stream_settings = stream_settings or StreamSettings()
        self.checker: Checker
        if api_base:
            self.checker = RemoteChecker(api_base, api_key, fail_on_error=fail_on_error)
        else:
            if judge is None and omniguard_config:
                judge = OmniGuard.shared(JudgeConfig.load(omniguard_config))
            self.checker = LocalChecker(judge)

    # ------------------------------------------------------------------ LiteLLM's hooks

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        if self.should_run_guardrail(data=data, event_type=GuardrailEventHooks.pre_call) is True:
            await self._check_request(data, "pre_call")
        return data

    async def async_moderation_hook(self, data: dict, user_api_key_dict: Any, call_type: Any) -> None:
        if self.should_run_guardrail(data=data, event_type=GuardrailEventHooks.during_call) is True:
            await self._check_request(data, "during_call")

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        if self.should_run_guardrail(data=data, event_type=GuardrailEventHooks.post_call) is not True:
            return response
        choices = field(response, "choices")
        if not choices or not data.get("messages"):
            return response  # not a chat completion (embeddings, images): nothing this rail reads
        answer = answer_text(field(choices[0], "message"))
        if not answer.strip():
            return response  # an empty answer shows nothing to judge
        self._decide("post_call", await self.checker.check(_with_answer(data["messages"], answer), "output"))
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: AsyncIterable[Any], request_data: dict
    ) -> AsyncGenerator[Any, None]:
        if self.should_run_guardrail(data=request_data, event_type=GuardrailEventHooks.post_call) is not True \
                or not request_data.get("messages"):
            async for chunk in response:
                yield chunk
            return
        messages = request_data["messages"]

        async def judge(window: Window) -> Verdict:
            return await self.checker.check(_with_answer(messages, window.text), "output")

        rail: StreamRail[Any] = StreamRail(self.stream_settings, read=lambda chunk: (delta_text(chunk), ()))
        async for chunk in amoderate(response, rail, judge):
            yield chunk
        if rail.blocked is not None:
            # LiteLLM's form for a stream that ends in an error: the proxy sends it as the last event
            # (or, before any chunk, as a plain HTTP error with this status)
            message = f"OmniGuard blocked the answer: {rail.blocked.summary()}"
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'invalid_request_error', 'param': None, 'code': '400'}})}\n\n"

    # ------------------------------------------------------------------ the one decision

    async def _check_request(self, data: Mapping[str, Any], stage: str) -> None:
        messages = data.get("messages")
        if messages:
            self._decide(stage, await self.checker.check(messages, "input"))

    def _decide(self, stage: str, verdict: Verdict) -> None:
        if not verdict.safe:
            raise OmniGuardViolation(self.guardrail_name, stage, verdict)


def _with_answer(messages: Any, answer: str) -> list[Any]:
    return [*messages, {"role": "assistant", "content": answer}]
