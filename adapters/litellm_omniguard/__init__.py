"""OmniGuard for LiteLLM: a custom guardrail for the SDK and the proxy.

Proxy (``config.yaml``)::

    guardrails:
      - guardrail_name: omniguard
        litellm_params:
          guardrail: litellm_omniguard.OmniGuardGuardrail
          mode: [pre_call, post_call]
          default_on: true
          api_base: http://127.0.0.1:8000      # omniguard serve; leave out to judge in process

SDK::

    import litellm
    import litellm_omniguard
    from litellm_omniguard import OmniGuardGuardrail

    litellm.callbacks = [OmniGuardGuardrail(guardrail_name="omniguard", event_hook=["pre_call", "post_call"])]
    await litellm.acompletion(model=..., messages=..., guardrails=["omniguard"])
    # LiteLLM's SDK runs no post-call hook on streams and no hook on sync calls: these do
    stream = await litellm_omniguard.acompletion(model=..., messages=..., guardrails=["omniguard"], stream=True)
    answer = litellm_omniguard.completion(model=..., messages=..., guardrails=["omniguard"])

``omniguard serve`` also answers LiteLLM's Generic Guardrail API
(``guardrail: generic_guardrail_api``, ``api_base`` the server), for proxies that should not
import this package. ``docs/litellm.md`` has both configs.
"""

from __future__ import annotations

from ._checker import LocalChecker, RemoteChecker
from ._sdk import GuardedStream, acompletion, completion
from .guardrail import OmniGuardGuardrail, OmniGuardViolation

__all__ = ["GuardedStream", "LocalChecker", "OmniGuardGuardrail", "OmniGuardViolation", "RemoteChecker", "acompletion",
           "completion"]
