"""Property test of LiteLLM SDK streams through ``litellm_omniguard.acompletion``: a real
``litellm.acompletion(stream=True)`` (LiteLLM's own stream wrapper and chunk types) over an
in-process provider (LiteLLM's ``CustomLLM``) that streams random answers with the trigger at a
random place, random chunkings and window settings, and sometimes a tool call after the text
(its arguments safe or not). No released chunk carries a character from an unsafe window or
after it, nothing of an unsafe tool call is released, a block raises ``OmniGuardViolation``
after the last released chunk, and a safe answer comes out byte-identical."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
import litellm_omniguard
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litellm import CustomLLM
from litellm_omniguard import OmniGuardGuardrail, OmniGuardViolation

from omniguard_plugins.testing import scripted_judge
from tests.support.stream_helpers import answers, check_shown

#: LiteLLM's SDK costs ~0.1 s a stream on these cores: fewer cases than the gateway's
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CALLS = {"safe": '{"to": "bob", "body": "lunch at noon"}', "unsafe": '{"to": "bob", "body": "a bomb kit"}'}


class Scripted(CustomLLM):
    """Streams ``chunks`` as text, then ``call`` (None, "safe" or "unsafe") in 5-character pieces."""

    chunks: list[str] = []
    call: str | None = None

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for text in self.chunks:
            yield {"text": text, "is_finished": False, "finish_reason": "", "usage": None, "index": 0,
                   "tool_use": None}
        if self.call:
            arguments = CALLS[self.call]
            for at in range(0, len(arguments), 5):
                piece = {"index": 0, "type": "function", "id": "call_9" if at == 0 else None,
                         "function": {"name": "send_email" if at == 0 else None, "arguments": arguments[at:at + 5]}}
                yield {"text": "", "is_finished": False, "finish_reason": "", "usage": None, "index": 0,
                       "tool_use": piece}
        yield {"text": "", "is_finished": True, "finish_reason": "tool_calls" if self.call else "stop",
               "usage": None, "index": 0, "tool_use": None}


@pytest.fixture(scope="module")
def provider() -> Iterator[Scripted]:
    judge = scripted_judge({"bomb": "S9"}, cache_size=0, max_wait_ms=0)
    handler = Scripted()
    saved = litellm.callbacks, litellm.custom_provider_map
    guardrail = OmniGuardGuardrail(judge=judge, guardrail_name="omniguard", event_hook=["pre_call", "post_call"])
    litellm.callbacks, litellm.custom_provider_map = [guardrail], [{"provider": "scripted", "custom_handler": handler}]
    yield handler
    litellm.callbacks, litellm.custom_provider_map = saved
    judge.close()


async def _stream(provider: Scripted) -> tuple[list[Any], OmniGuardViolation | None]:
    out: list[Any] = []
    stream = await litellm_omniguard.acompletion(model="scripted/m", messages=[{"role": "user", "content": "Q?"}],
                                                 stream=True, guardrails=["omniguard"])
    try:
        async for chunk in stream:
            out.append(chunk)
    except OmniGuardViolation as exc:
        return out, exc
    return out, None


@SOME
@given(case=answers(), call=st.sampled_from([None, None, "safe", "unsafe"]))
def test_litellm_sdk_stream_shows_only_judged_text(provider, case, call) -> None:
    answer, at, chunks, cfg = case
    provider.chunks, provider.call = chunks, call
    for guardrail in litellm.callbacks:
        guardrail.stream_settings = cfg
    shown_chunks, blocked = asyncio.run(_stream(provider))
    deltas = [c.choices[0].delta for c in shown_chunks if c.choices]
    shown = "".join(d.content or "" for d in deltas)
    calls = [tc for d in deltas for tc in d.tool_calls or []]
    if call == "unsafe" and at is None:  # the text is safe: it may be shown, the call never
        assert blocked is not None and answer.startswith(shown) and not calls
    else:
        check_shown(answer, at, shown, blocked is not None, cfg)
    if blocked is not None:
        assert blocked.stage == "output" and blocked.verdict.category_codes == ("S9",) and not calls
    elif call:
        assert calls[0].id == "call_9" and "".join(tc.function.arguments or "" for tc in calls) == CALLS[call]
