"""A LlamaIndex agent with a tool that posts images, guarded by OmniGuard (``OmniGuardLLM``).

    python examples/llamaindex_agent.py                      # scripted demo judge, offline, seconds
    OMNIGUARD_MODEL=<checkpoint> python examples/llamaindex_agent.py   # the real judge (a hub id or a folder)

The agent is a real ``FunctionAgent`` with real ``FunctionTool``s. Its LLM is LlamaIndex's
``MockFunctionCallingLLM`` playing a scripted model, so the example runs offline; swap in any
function-calling LLM (``OpenAI(model=...)``, ...) and nothing else changes. Wrapping the LLM in
``OmniGuardLLM`` guards every step of the agent:

1. "post the sky photo": the model calls ``post_image(caption, image=<a blue PNG data URI>)``; the
   call is judged with its image as an image, passes, and the tool runs.
2. "post the forum photo": the call carries a mostly red PNG (the stand-in for a graphic photo);
   it is judged unsafe, the tool never runs, and the agent answers with the refusal.
3. "describe the forum photo": the model calls ``fetch_photo("forum")``, which returns that red
   image; the tool result is judged before the model reads it, and the agent answers the refusal.
4. The same as 2, streamed: no event ever shows the unsafe call.

Without OMNIGUARD_MODEL the judge is a scripted stand-in (text about bombs and mostly red images
are unsafe); ``tests/llama_index/test_tiny_checkpoint.py`` runs the same agent on a real
(tiny) checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import AgentStream, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool
from llama_index_omniguard import OmniGuardLLM

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import keyword_handler, scripted_judge

DATA = Path(__file__).parent / "data"
PHOTOS = {"sky": DATA / "sky.png", "forum": DATA / "red.png"}
posted: list[str] = []


def demo_judge() -> OmniGuard:
    """The real OmniGuard when OMNIGUARD_MODEL is set, else a scripted stand-in."""
    if os.environ.get("OMNIGUARD_MODEL"):
        return OmniGuard.shared()
    return scripted_judge(keyword_handler({"bomb": "S9"}, red_images=True))


def data_uri(name: str) -> str:
    return "data:image/png;base64," + base64.b64encode(PHOTOS[name].read_bytes()).decode()


# ----------------------------------------------------------------------------- the tools


def post_image(caption: str, image: str) -> str:
    """Post an image (a data: URI) with a caption to the team channel."""
    posted.append(caption)
    return f"posted '{caption}'"


def fetch_photo(name: str) -> ImageBlock:
    """Fetch a photo from the archive by name."""
    return ImageBlock(image=base64.b64encode(PHOTOS[name].read_bytes()), image_mimetype="image/png")


# ----------------------------------------------------------------------------- a scripted model


def scripted_model(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    """What a real model would do with each request (offline stand-in)."""
    last = messages[-1]
    if last.role == MessageRole.TOOL:
        return ChatMessage(role="assistant", content="Done: " + (last.content or "the photo is attached."))
    question = (last.content or "").lower()
    name = "forum" if "forum" in question else "sky"
    if question.startswith("describe"):
        return _call("fetch_photo", name=name)
    return _call("post_image", caption=f"The {name} photo", image=data_uri(name))


def _call(tool: str, **kwargs: Any) -> ChatMessage:
    return ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id=f"call-{tool}", tool_name=tool,
                                                               tool_kwargs=kwargs)])


def agent(judge: OmniGuard, streaming: bool = False) -> FunctionAgent:
    llm = OmniGuardLLM(MockFunctionCallingLLM(response_generator=scripted_model), judge=judge)
    tools = [FunctionTool.from_defaults(post_image), FunctionTool.from_defaults(fetch_photo)]
    return FunctionAgent(tools=tools, llm=llm, streaming=streaming)


async def main() -> None:
    judge = demo_judge()
    for request in ("post the sky photo", "post the forum photo", "describe the forum photo"):
        result = await agent(judge).run(request)
        verdict = (result.raw or {}).get("omniguard") if isinstance(result.raw, dict) else None
        blocked = f"  [blocked at {verdict['stage']}: {verdict['categories']}]" if verdict else ""
        print(f"== {request}\n   {result}{blocked}")
    print(f"   posted so far: {posted}")

    print("== post the forum photo, streamed: every event the app sees")
    handler = agent(judge, streaming=True).run("post the forum photo")
    async for event in handler.stream_events():
        if isinstance(event, AgentStream):
            print(f"   delta={event.delta!r} tool_calls={[t.tool_name for t in event.tool_calls]}")
    print(f"   {await handler}")


if __name__ == "__main__":
    asyncio.run(main())
