"""``OmniGuardGuardrail``: OmniGuard as a LiteLLM custom guardrail.

One decision per hook, each a few lines:

- ``pre_call`` (``async_pre_call_hook``): judge the request before the LLM sees it;
- ``during_call`` (``async_moderation_hook``): the same check, run beside the LLM call;
- ``post_call`` (``async_post_call_success_hook``): judge the answer in the context of the
  request: everything it carries (text, ``reasoning_content``, tool calls, spoken audio with
  its transcript, images; :mod:`omniguard_plugins.openai_answers`). Streamed answers
  (``async_post_call_streaming_iterator_hook``, the proxy's hook) pass the core stream rail:
  no chunk the judge has not passed reaches the client (a tool call or the audio only whole,
  after the final check), and a block ends the stream with an OpenAI-shaped error event.

LiteLLM's SDK runs no post-call hook on a stream and no hook at all on a sync call, so
:mod:`._sdk` has ``acompletion`` / ``completion`` that do; a plain ``litellm.acompletion(...,
stream=True)`` that asks for this guardrail's post-call check is refused with a one-line reason
(it could not be checked), and a plain sync ``litellm.completion`` logs and warns that it was not.

A block raises :class:`OmniGuardViolation` (LiteLLM's ``GuardrailRaisedException`` and the
project's :class:`~omniguard_plugins.GuardViolation`: the proxy answers 400, the SDK raises it
to the caller). Verdicts come from the judge in this process or, with ``api_base``, from
``omniguard serve`` (see :mod:`._checker`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import litellm
from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks

from omniguard_plugins import GuardViolation, JudgeConfig, OmniGuard, Verdict
from omniguard_plugins.content import Part
from omniguard_plugins.doors import Stage, violation
from omniguard_plugins.errors import ConfigError, ContentError
from omniguard_plugins.openai_answers import (
    AnswerStream,
    answer_parts,
    blocked_event,
    field,
    has_content,
    openai_content,
)
from omniguard_plugins.streaming import StreamRail, StreamSettings, Window, amoderate

from ._checker import Checker, LocalChecker, RemoteChecker

__all__ = ["OmniGuardGuardrail", "OmniGuardViolation"]

log = logging.getLogger("litellm_omniguard")

_HOOKS = [GuardrailEventHooks.pre_call, GuardrailEventHooks.during_call, GuardrailEventHooks.post_call]
#: set while a call runs through :mod:`._sdk`'s wrappers, which run the checks LiteLLM's SDK skips
GUARDED_CALL: ContextVar[bool] = ContextVar("omniguard_guarded_call", default=False)


class OmniGuardViolation(GuardrailRaisedException, GuardViolation):
    """A request or answer OmniGuard blocked. ``stage`` is ``"input"`` or ``"output"`` (as for
    every door's :class:`~omniguard_plugins.GuardViolation`), ``hook`` the LiteLLM hook that
    blocked (``pre_call``, ``during_call``, ``post_call``), ``verdict`` the judge's verdict."""

    def __init__(self, guardrail_name: str | None, hook: str, verdict: Verdict) -> None:
        stage: Stage = "output" if hook == "post_call" else "input"
        # GuardrailRaisedException's own __init__ would call GuardViolation's without its fields
        GuardViolation.__init__(self, str(violation(verdict, stage)), stage=stage, verdict=verdict)
        self.guardrail_name = guardrail_name
        self.status_code = 400
        self.blocked_content = not verdict.error  # False: the check could not be made (fail closed)
        self.message = str(self)
        self.hook = hook


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
        if not self.checks_answers(data):
            return response
        audio_format = _audio_format(data)
        # not a chat completion (embeddings, images): no choices, nothing this rail reads; with n > 1
        # every choice is an answer the caller sees
        for choice in field(response, "choices") or []:
            try:
                parts: Sequence[Part] | None = answer_parts(field(choice, "message"), audio_format=audio_format)
            except ContentError:
                parts = None  # judged anyway: the check meets the same error and on_error decides
            if parts is None or has_content(parts):  # an empty answer shows nothing to judge
                self._decide("post_call", await self.checker.check(_answered(data["messages"], parts), "output"))
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: AsyncIterable[Any], request_data: dict
    ) -> AsyncGenerator[Any, None]:
        if not self.checks_answers(request_data):
            async for chunk in response:
                yield chunk
            return
        try:
            async for chunk in self.guard_stream(response, request_data):
                yield chunk
        except OmniGuardViolation as exc:
            # the proxy sends this as the stream's last event (or, before any chunk, as a plain HTTP
            # error); the same event the gateway ends a blocked stream with
            yield f"data: {json.dumps(blocked_event(exc.verdict, 'output'))}\n\n"

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type: Any) -> dict | None:
        """LiteLLM's SDK calls this before every ``acompletion``; a stream it will run no
        post-call hook on is refused here when this guardrail should check its answer."""
        if kwargs.get("stream") is True and not GUARDED_CALL.get() and kwargs.get("proxy_server_request") is None \
                and isinstance(kwargs.get("guardrails"), list) and self.checks_answers(kwargs):
            raise ConfigError(f"LiteLLM runs no post-call guardrail on SDK streams, so {self.guardrail_name!r} cannot "
                              "check this answer: call litellm_omniguard.acompletion(...) (same arguments; "
                              "call=router.acompletion for a Router) instead")
        result: dict | None = await super().async_pre_call_deployment_hook(kwargs, call_type)
        return result

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """LiteLLM's sync SDK runs no guardrail hook: say so, loudly, every time it happens."""
        params = kwargs.get("litellm_params") or {} if isinstance(kwargs, Mapping) else {}
        if params.get("acompletion") is True or params.get("proxy_server_request") or GUARDED_CALL.get() \
                or self not in litellm.callbacks:  # LiteLLM keeps calling callbacks it was once given
            return
        reason = (f"OmniGuard guardrail {self.guardrail_name!r} did NOT check this call: LiteLLM runs no guardrail "
                  "hooks on sync litellm.completion; use litellm_omniguard.completion(...) (same arguments)")
        log.error(reason)
        warnings.warn(reason, RuntimeWarning, stacklevel=2)

    # ------------------------------------------------------------------ the checks

    def checks_answers(self, data: Mapping[str, Any]) -> bool:
        """Whether this guardrail judges the answer to ``data`` (post_call on, messages present)."""
        return bool(data.get("messages")) and \
            self.should_run_guardrail(data=data, event_type=GuardrailEventHooks.post_call) is True

    async def guard_stream(self, response: AsyncIterable[Any], request_data: Mapping[str, Any]) -> AsyncIterator[Any]:
        """``response``'s chunks as the core stream rail releases them; raises
        :class:`OmniGuardViolation` after the last released chunk when the answer is blocked."""
        messages = request_data["messages"]
        reader = AnswerStream(audio_format=_audio_format(request_data) or "pcm16")

        async def judge(window: Window) -> Verdict:
            return await self.checker.check(_answered(messages, window.parts), "output")

        rail: StreamRail[Any] = StreamRail(self.stream_settings, read=reader.read)
        async for chunk in amoderate(response, rail, reader.judge(judge)):
            yield chunk
        if rail.blocked is not None:
            raise OmniGuardViolation(self.guardrail_name, "post_call", rail.blocked)

    async def _check_request(self, data: Mapping[str, Any], hook: str) -> None:
        messages = data.get("messages")
        if messages:
            self._decide(hook, await self.checker.check(messages, "input"))

    def _decide(self, hook: str, verdict: Verdict) -> None:
        if not verdict.safe:
            raise OmniGuardViolation(self.guardrail_name, hook, verdict)


def _audio_format(data: Mapping[str, Any]) -> str | None:
    audio = data.get("audio")
    value = field(audio, "format") if audio is not None else None
    return value if isinstance(value, str) else None


def _answered(messages: Any, parts: Sequence[Part] | None) -> list[Any]:
    """The request's messages and the answer as an assistant message (``None``: an answer the
    judge cannot read, sent as a part the checker's converter refuses, so on_error decides)."""
    try:
        content = openai_content(parts) if parts is not None else None
    except ContentError:
        content = None
    return [*messages, {"role": "assistant", "content": content if content is not None else [
        {"type": "unreadable_answer"}]}]
