"""The agent doors on the path users run: a fresh process, nothing injected, ``OMNIGUARD_MODEL``
naming the tiny checkpoint, each door creating its own shared judge, and the *first* call async.

- LlamaIndex: a real ``FunctionAgent`` whose LLM is ``OmniGuardLLM`` (no judge given), around
  LlamaIndex's ``MockFunctionCallingLLM``, with a real ``FunctionTool``.
- OpenAI Agents SDK: a real ``Runner`` with the ready guardrails (``omniguard_input``,
  ``omniguard_output``, ``omniguard_tool_input``) and the SDK's ``ScriptedModel``.
Each must give the tiny checkpoint's real verdicts: a trigger word is unsafe, plain text safe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_PRELUDE = """
import asyncio, json, sys
def report(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""

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
    env = {**os.environ, "OMNIGUARD_MODEL": str(tiny_checkpoint_path), "OMNIGUARD_DEVICE": "cpu",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false", "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    for name in ("OMNIGUARD_URL", "OMNIGUARD_CONFIG", "OMNIGUARD_BACKEND", "OMNIGUARD_TOKEN"):
        env.pop(name, None)
    folder = tmp_path_factory.mktemp("fresh_agents")
    procs = {}
    for name, body in DOORS.items():
        script = folder / f"door_{name}.py"  # never the name of a package it imports
        script.write_text(textwrap.dedent(_PRELUDE) + textwrap.dedent(body))
        procs[name] = subprocess.Popen([sys.executable, str(script)], env=env, cwd=folder,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, dict] = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        out[name] = json.loads(lines[-1][7:]) if lines else {"crashed": proc.returncode, "stderr": stderr[-3000:]}
    return out


@pytest.mark.parametrize("door", list(DOORS))
def test_first_call_through_each_agent_door_gives_the_real_verdict(results, door):
    got = results[door]
    assert "crashed" not in got, got.get("stderr")
    assert got == EXPECTED[door]
