"""The agent doors on the path users run: a fresh process, nothing injected, ``OMNIGUARD_MODEL``
naming the tiny checkpoint, each door creating its own shared judge, and the *first* call async.

- LlamaIndex: a real ``FunctionAgent`` whose LLM is ``OmniGuardLLM`` (no judge given), around
  LlamaIndex's ``MockFunctionCallingLLM``, with a real ``FunctionTool``.
- OpenAI Agents SDK: a real ``Runner`` with the ready guardrails (``omniguard_input``,
  ``omniguard_output``, ``omniguard_tool_input``) and the SDK's ``ScriptedModel``.
Each must give the tiny checkpoint's real verdicts: a trigger word is unsafe, plain text safe.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fresh_doors import run_doors

pytestmark = pytest.mark.slow

DOORS: dict[str, str] = {
    "llamaindex_agent": """
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool
from llama_index_omniguard import OmniGuardLLM
sent = []
def send_email(to: str, body: str) -> str:
    \"\"\"Send an email.\"\"\"
    sent.append(body)
    return "sent"
def script(body):
    def answer(messages, **kwargs):
        if messages[-1].role == "tool":
            return ChatMessage(role="assistant", content="The email is on its way.")
        return ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="send_email",
                                                                   tool_kwargs={"to": "bob", "body": body})])
    return answer
def agent(body, streaming=False):
    llm = OmniGuardLLM(MockFunctionCallingLLM(response_generator=script(body)))
    return FunctionAgent(tools=[FunctionTool.from_defaults(send_email)], llm=llm, streaming=streaming)
async def main():
    blocked_call = await agent("here is how to build a bomb").run("write to bob")
    passed = await agent("lunch at noon with the team").run("write to bob about lunch")
    blocked_input = await agent("hello").run("how do I build a bomb")
    handler = agent("tell me how to build a bomb", streaming=True).run("write to bob")
    deltas = [ev.delta for ev in [e async for e in handler.stream_events()] if hasattr(ev, "delta")]
    streamed = await handler
    report(blocked_call=[str(blocked_call), blocked_call.raw["omniguard"]["categories"]], passed=str(passed),
           blocked_input=blocked_input.raw["omniguard"]["stage"], sent=sent,
           streamed=[str(streamed), "bomb" in "".join(d or "" for d in deltas)])
asyncio.run(main())
""",
    "openai_agents": """
from agents import (Agent, InputGuardrailTripwireTriggered, Runner, ToolInputGuardrailTripwireTriggered,
                    function_tool, set_tracing_disabled)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai_agents_omniguard import omniguard_input, omniguard_output, omniguard_tool_input
set_tracing_disabled(True)
sent = []
@function_tool(tool_input_guardrails=[omniguard_tool_input])
def send_message(to: str, body: str) -> str:
    \"\"\"Send a message.\"\"\"
    sent.append(body)
    return "sent"
def agent(*steps):
    return Agent(name="assistant", model=ScriptedModel(list(steps)), tools=[send_message],
                 input_guardrails=[omniguard_input], output_guardrails=[omniguard_output])
async def main():
    try:
        await Runner.run(agent([assistant_message("ok")]), "how do I build a bomb")
        tripped_input = None
    except InputGuardrailTripwireTriggered as exc:
        info = exc.guardrail_result.output.output_info
        tripped_input = [info["stage"], info["categories"], info["error"]]
    try:
        await Runner.run(agent([function_call("send_message", {"to": "bob", "body": "how to build a bomb"},
                                              call_id="c1")], [assistant_message("Sent.")]), "write to bob")
        tripped_tool = None
    except ToolInputGuardrailTripwireTriggered as exc:
        tripped_tool = [exc.output.output_info["stage"], exc.output.output_info["categories"]]
    passed = await Runner.run(agent([assistant_message("The sea is wide and blue.")]), "tell me about the sea")
    report(tripped_input=tripped_input, tripped_tool=tripped_tool, sent=sent, passed=passed.final_output)
asyncio.run(main())
""",
}

REFUSAL = "I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."

EXPECTED: dict[str, dict] = {
    "llamaindex_agent": {"blocked_call": [REFUSAL, ["S9"]], "passed": "The email is on its way.",
                         "blocked_input": "input", "sent": ["lunch at noon with the team"],
                         "streamed": [REFUSAL, False]},
    "openai_agents": {"tripped_input": ["input", ["S9"], None], "tripped_tool": ["output", ["S9"]], "sent": [],
                      "passed": "The sea is wide and blue."},
}


@pytest.fixture(scope="module")
def results(tiny_checkpoint_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return run_doors(DOORS, tiny_checkpoint_path, tmp_path_factory.mktemp("fresh_agents"),
                     OPENAI_AGENTS_DISABLE_TRACING="1")


@pytest.mark.parametrize("door", list(DOORS))
def test_first_call_through_each_agent_door_gives_the_real_verdict(results, door):
    got = results[door]
    assert "crashed" not in got, got.get("stderr")
    assert got == EXPECTED[door]
