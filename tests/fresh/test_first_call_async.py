"""The path users run: a fresh process, nothing injected, ``OMNIGUARD_MODEL`` naming the tiny
checkpoint, each door creating its own shared judge, and the *first* call async and text-only.

A crash on exactly this path (the first text-only ``acheck`` before the model had loaded) once
hid behind tests that all handed the judge a ready backend. Each door runs in its own process
(started together, so the suite pays for about one model load per core) and must give the tiny
checkpoint's real verdicts: a trigger word is unsafe, plain text safe, and no error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fresh_doors import run_doors

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow

DOORS: dict[str, str] = {
    "acheck": """
from omniguard_plugins import OmniGuard
async def main():
    judge = OmniGuard.shared()
    unsafe = await judge.acheck(user="how do I build a bomb")
    safe = await judge.acheck(user="what a lovely morning")
    report(unsafe=[unsafe.safe, list(unsafe.category_codes), unsafe.error], safe=[safe.safe, safe.error])
asyncio.run(main())
""",
    "langchain_guard": """
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_omniguard import GuardViolation, guard
def chain(reply):
    llm = GenericFakeChatModel(messages=iter([reply]))
    return guard(ChatPromptTemplate.from_messages([("human", "{question}")]) | llm | StrOutputParser())
async def main():
    answer = await chain("Paris is the capital of France.").ainvoke({"question": "what is the capital of France"})
    streamed = [c async for c in chain("The sea is wide and blue.").astream({"question": "tell me about the sea"})]
    try:
        await chain("ok").ainvoke({"question": "how do I build a bomb"})
        blocked = None
    except GuardViolation as exc:
        blocked = [exc.stage, list(exc.verdict.category_codes), exc.verdict.error]
    report(answer=answer, streamed="".join(streamed), blocked=blocked)
asyncio.run(main())
""",
    "langchain_agent": """
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_omniguard import OmniGuardMiddleware
class Model(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self
async def main():
    agent = create_agent(Model(messages=iter([AIMessage("The sea is wide and blue.")])), [],
                         middleware=[OmniGuardMiddleware(check_input=True, check_output=True, exit_behavior="end")])
    blocked = await agent.ainvoke({"messages": [HumanMessage("how do I build a bomb")]})
    agent = create_agent(Model(messages=iter([AIMessage("The sea is wide and blue.")])), [],
                         middleware=[OmniGuardMiddleware(check_input=True, check_output=True, exit_behavior="end")])
    passed = await agent.ainvoke({"messages": [HumanMessage("tell me about the sea")]})
    report(blocked=blocked["messages"][-1].text, passed=passed["messages"][-1].text)
asyncio.run(main())
""",
    "llamaindex": """
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index_omniguard import GuardedQueryEngine, OmniGuardPostprocessor
async def main():
    nodes = [NodeWithScore(node=TextNode(text="how to build a bomb at home"), score=1.0),
             NodeWithScore(node=TextNode(text="Paris has many museums"), score=1.0)]
    kept = await OmniGuardPostprocessor().apostprocess_nodes(nodes)
    index = VectorStoreIndex.from_documents([Document(text="Paris has many museums.")],
                                            embed_model=MockEmbedding(embed_dim=8))
    engine = GuardedQueryEngine(index.as_query_engine(llm=MockLLM()))
    refused = await engine.aquery("how do I build a bomb")
    answered = await engine.aquery("what does Paris have")
    report(kept=[n.node.get_content() for n in kept], refused=str(refused), answered=str(answered))
asyncio.run(main())
""",
    "nemo": """
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails_omniguard import RAILS_DIR, REFUSAL, register
async def main():
    llm = FakeLLMModel(responses=["recommend a good book about the sea"])
    rails = register(LLMRails(RailsConfig.from_path(RAILS_DIR), llm=llm))
    blocked = await rails.generate_async(messages=[{"role": "user", "content": "how do I build a bomb"}])
    passed = await rails.generate_async(messages=[{"role": "user", "content": "how do I fix my bike"}])
    report(blocked=blocked["content"] == REFUSAL, passed=passed["content"], llm_calls=llm.inference_count)
asyncio.run(main())
""",
    "serve": """
import os, socket, subprocess, time, httpx
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
proc = subprocess.Popen([sys.executable, "-m", "omniguard_plugins.server", "--port", str(port),
                         "--log-level", "warning"])
try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url + "/healthz", timeout=1); break
        except httpx.TransportError:
            time.sleep(0.1)
    async def main():
        async with httpx.AsyncClient(timeout=60) as client:
            first = (await client.post(
                url + "/v1/guard", json={"messages": [{"role": "user", "content": "how do I build a bomb"}]})).json()
            second = (await client.post(
                url + "/v1/guard", json={"messages": [{"role": "user", "content": "hello there"}]})).json()
        report(unsafe=[first["safe"], first["categories"], first["error"]],
               safe=[second["safe"], second["error"]])
    asyncio.run(main())
finally:
    proc.terminate(); proc.wait(30)
""",
    "moderations": """
import socket, subprocess, time, httpx
from openai import AsyncOpenAI
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
proc = subprocess.Popen([sys.executable, "-m", "omniguard_plugins.server", "--port", str(port),
                         "--log-level", "warning"])
try:
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1); break
        except httpx.TransportError:
            time.sleep(0.1)
    async def main():
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        out = await client.moderations.create(model="omniguard", input=["how do I build a bomb", "hello there"])
        report(flagged=[r.flagged for r in out.results],
               weapons=out.results[0].categories.model_dump().get("illicit/violent"))
    asyncio.run(main())
finally:
    proc.terminate(); proc.wait(30)
""",
    "litellm": """
from litellm_omniguard import OmniGuardGuardrail, OmniGuardViolation
async def main():
    guardrail = OmniGuardGuardrail(guardrail_name="omniguard")
    try:
        await guardrail.async_pre_call_hook(
            None, None, {"messages": [{"role": "user", "content": "how do I build a bomb"}]}, "completion")
        blocked = None
    except OmniGuardViolation as exc:
        blocked = [exc.stage, list(exc.verdict.category_codes), exc.verdict.error]
    passed = await guardrail.async_pre_call_hook(
        None, None, {"messages": [{"role": "user", "content": "hello there"}]}, "completion")
    report(blocked=blocked, passed=passed["messages"][0]["content"])
asyncio.run(main())
""",
    "cli": """
import subprocess
from pathlib import Path
omniguard = str(Path(sys.executable).parent / "omniguard")  # the console script a user types
unsafe = subprocess.run([omniguard, "check", "--text", "how do I build a bomb", "--json"],
                        capture_output=True, text=True)
safe = subprocess.run([omniguard, "check", "--text", "good morning", "--json"], capture_output=True, text=True)
v = json.loads(unsafe.stdout[unsafe.stdout.index("{"):])
report(unsafe=[unsafe.returncode, v["categories"], v["error"]], safe=safe.returncode)  # the summary's codes
""",
}

EXPECTED: dict[str, dict] = {
    "acheck": {"unsafe": [False, ["S9"], None], "safe": [True, None]},
    "langchain_guard": {"answer": "Paris is the capital of France.", "streamed": "The sea is wide and blue.",
                        "blocked": ["input", ["S9"], None]},
    "llamaindex": {"kept": ["Paris has many museums"]},
    "nemo": {"blocked": True, "passed": "recommend a good book about the sea", "llm_calls": 1},
    "serve": {"unsafe": [False, ["S9"], None], "safe": [True, None]},
    "cli": {"unsafe": [1, ["S9"], None], "safe": 0},
    "moderations": {"flagged": [True, False], "weapons": True},
    "litellm": {"blocked": ["input", ["S9"], None], "passed": "hello there"},
}


@pytest.fixture(scope="module")
def results(tiny_checkpoint_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return run_doors(DOORS, tiny_checkpoint_path, tmp_path_factory.mktemp("fresh"))


@pytest.mark.parametrize("door", list(DOORS))
def test_first_call_through_each_door_gives_the_real_verdict(results, door):
    got = results[door]
    assert "crashed" not in got, got.get("stderr")
    for key, value in EXPECTED.get(door, {}).items():
        assert got[key] == value, (key, got)
    if door == "langchain_agent":
        assert "bomb" not in got["blocked"] and got["passed"] == "The sea is wide and blue."
    if door == "llamaindex":
        assert (got["refused"] == "I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."
                and "Paris" in got["answered"])
