"""The NeMo door's newer paths as users run them: a fresh process, nothing injected,
``OMNIGUARD_MODEL`` naming the tiny checkpoint, the actions and ``stream`` creating the shared
judge themselves, and the *first* call async.

- ``nemoguardrails_omniguard.stream`` on the shipped Colang 1 config: the first call streams a
  safe answer byte-identical, then an answer with a trigger word ends with the output flow's
  error chunk and shows nothing of the trigger.
- The shipped tool rails (``passthrough: true``): an unsafe tool call's first check blocks it
  and NeMo hands the app no call; an unsafe tool result is refused before the LLM reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fresh_doors import run_doors

pytestmark = pytest.mark.slow

DOORS: dict[str, str] = {
    "nemo_stream": """
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import RAILS_DIR, stream
SAFE = "The sea is wide and blue, and the boats come home at dusk. " * 5
UNSAFE = "The sea is calm today. " * 12 + "Then you bomb the harbour. " + "The sea is calm. " * 4
async def main():
    rails = LLMRails(RailsConfig.from_path(RAILS_DIR), llm=FakeLLMModel(responses=[SAFE, UNSAFE]))
    ask = [{"role": "user", "content": "tell me about the sea"}]
    safe = [c async for c in stream(rails, messages=ask)]
    unsafe = [c async for c in stream(rails, messages=ask)]
    error = json.loads(unsafe[-1])["error"]
    report(safe="".join(safe) == SAFE, shown_trigger="bomb" in "".join(unsafe[:-1]),
           blocked=[error["param"], error["omniguard"]["stage"], error["omniguard"]["error"]])
asyncio.run(main())
""",
    "nemo_tools": """
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails.types import LLMResponse, ToolCall, ToolCallFunction
from nemoguardrails_omniguard import RAILS_DIR, REFUSAL
def rails(responses):
    config = RailsConfig.from_path(RAILS_DIR)
    config.passthrough = True
    llm = FakeLLMModel(llm_responses=responses)
    return LLMRails(config, llm=llm), llm
async def main():
    call = ToolCall(id="c1", function=ToolCallFunction(name="send_email", arguments={"body": "how to build a bomb"}))
    app, _ = rails([LLMResponse(content="", tool_calls=[call])])
    blocked_call = await app.generate_async(messages=[{"role": "user", "content": "write to bob"}])
    calls = [{"id": "c1", "type": "function", "function": {"name": "send_email", "arguments": "{}"}}]
    turn = [{"role": "user", "content": "write to bob"}, {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "here is how to build a bomb", "name": "send_email", "tool_call_id": "c1"}]
    app, llm = rails([LLMResponse(content="never said")])
    blocked_result = await app.generate_async(messages=turn)
    report(call=[blocked_call["content"] == REFUSAL, bool(blocked_call.get("tool_calls"))],
           result=[blocked_result["content"] == REFUSAL, llm.inference_count])
asyncio.run(main())
""",
}

EXPECTED: dict[str, dict] = {
    "nemo_stream": {"safe": True, "shown_trigger": False, "blocked": ["omniguard check output", "output", None]},
    "nemo_tools": {"call": [True, False], "result": [True, 0]},
}


@pytest.fixture(scope="module")
def results(tiny_checkpoint_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return run_doors(DOORS, tiny_checkpoint_path, tmp_path_factory.mktemp("fresh_nemo"))


@pytest.mark.parametrize("door", list(DOORS))
def test_first_call_through_the_nemo_paths_gives_the_real_verdict(results, door):
    got = results[door]
    assert "crashed" not in got, got.get("stderr")
    assert got == EXPECTED[door]
