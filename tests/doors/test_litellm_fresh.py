"""The LiteLLM guardrail on the path users run: a fresh process, nothing injected
(``OMNIGUARD_MODEL`` names the tiny checkpoint, the guardrail builds the shared judge), the
*first* call an SDK stream through ``litellm_omniguard.acompletion``: the checkpoint's verdicts
decide what is shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.door_helpers import UPSTREAM_KEY
from tests.support.upstream_app import REPLIES

pytestmark = pytest.mark.slow

SCRIPT = """
import asyncio, json, sys
import litellm, litellm_omniguard
from litellm_omniguard import OmniGuardGuardrail, OmniGuardViolation

litellm.callbacks = [OmniGuardGuardrail(guardrail_name="omniguard", event_hook=["pre_call", "post_call"])]
call = dict(model="openai/upstream-llm", api_base=sys.argv[1], api_key=sys.argv[2], guardrails=["omniguard"])

def user(text):
    return [{"role": "user", "content": text}]

async def main():
    stream = await litellm_omniguard.acompletion(messages=user("tell me a story"), stream=True, **call)
    safe = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    shown, blocked = "", None
    try:
        async for c in await litellm_omniguard.acompletion(messages=user("long unsafe answer"), stream=True, **call):
            shown += (c.choices[0].delta.content or "") if c.choices else ""
    except OmniGuardViolation as exc:
        blocked = [exc.stage, list(exc.verdict.category_codes), exc.verdict.error]
    print("RESULT " + json.dumps({"safe": safe, "shown": shown, "blocked": blocked}), flush=True)

asyncio.run(main())
"""


def test_first_call_is_an_sdk_stream_judged_by_the_checkpoint(upstream, tiny_checkpoint_path, tmp_path):
    env = {**os.environ, "OMNIGUARD_MODEL": str(tiny_checkpoint_path), "OMNIGUARD_DEVICE": "cpu",
           "TRANSFORMERS_VERBOSITY": "error", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    for name in ("OMNIGUARD_URL", "OMNIGUARD_CONFIG", "OMNIGUARD_BACKEND"):
        env.pop(name, None)
    script = tmp_path / "door_litellm_stream.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, str(script), f"{upstream.url}/v1", UPSTREAM_KEY], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    got = json.loads(lines[-1][7:])
    assert got["safe"] == REPLIES["tell me a story"]
    assert got["blocked"] == ["output", ["S9"], None]
    assert "bomb" not in got["shown"] and REPLIES["long unsafe answer"].startswith(got["shown"])
