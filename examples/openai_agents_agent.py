"""An OpenAI Agents SDK agent with a tool that posts images, guarded by OmniGuard's guardrails.

    python examples/openai_agents_agent.py                      # scripted demo judge, offline, seconds
    OMNIGUARD_MODEL=<checkpoint> python examples/openai_agents_agent.py   # the real judge (a hub id or a folder)

The agent runs in the SDK's real ``Runner``. Its model is the SDK's own ``ScriptedModel`` (the
``Model`` interface, no network) playing what a model would answer; swap in ``model="gpt-4o"``
and nothing else changes. With OMNIGUARD_MODEL set the guardrails are the ready ones
(``omniguard_input`` and friends, on the shared judge); without it, the same guardrails built by
the factories on a scripted stand-in judge (text about bombs and mostly red images are unsafe):

1. "post the sky photo": the model calls ``post_image(caption, image=<a blue PNG data URI>)``; the
   tool-input guardrail judges the call with its image as an image, it passes, the tool runs.
2. "post the forum photo": the call carries a mostly red PNG (the stand-in for a graphic photo);
   the tool-input guardrail trips before the tool runs.
3. "describe the forum photo": ``fetch_photo`` returns that image; the tool-output guardrail
   trips before the model reads it.
4. "how do I build a bomb": the input guardrail trips before the model is called.

``tests/openai_agents/test_tiny_checkpoint.py`` runs the guardrails on a real (tiny) checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    ToolOutputGuardrailTripwireTriggered,
    ToolOutputImage,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai_agents_omniguard import (
    omniguard_input,
    omniguard_input_guardrail,
    omniguard_output,
    omniguard_output_guardrail,
    omniguard_tool_input,
    omniguard_tool_input_guardrail,
    omniguard_tool_output,
    omniguard_tool_output_guardrail,
)

from omniguard_plugins.testing import keyword_handler, scripted_judge

DATA = Path(__file__).parent / "data"
PHOTOS = {"sky": DATA / "sky.png", "forum": DATA / "red.png"}
posted: list[str] = []


def guardrails() -> tuple[Any, Any, Any, Any]:
    """The ready guardrails on the shared judge with OMNIGUARD_MODEL set; else the factories'."""
    if os.environ.get("OMNIGUARD_MODEL"):
        return omniguard_input, omniguard_output, omniguard_tool_input, omniguard_tool_output
    judge = scripted_judge(keyword_handler({"bomb": "S9"}, red_images=True))
    return (omniguard_input_guardrail(judge), omniguard_output_guardrail(judge),
            omniguard_tool_input_guardrail(judge), omniguard_tool_output_guardrail(judge))


def data_uri(name: str) -> str:
    return "data:image/png;base64," + base64.b64encode(PHOTOS[name].read_bytes()).decode()


def tools(tool_input: Any, tool_output: Any) -> list[Any]:
    @function_tool(tool_input_guardrails=[tool_input])
    def post_image(caption: str, image: str) -> str:
        """Post an image (a data: URI) with a caption to the team channel."""
        posted.append(caption)
        return f"posted '{caption}'"

    @function_tool(tool_output_guardrails=[tool_output])
    def fetch_photo(name: str) -> ToolOutputImage:
        """Fetch a photo from the archive by name."""
        return ToolOutputImage(image_url=data_uri(name))

    return [post_image, fetch_photo]


def model_for(request: str) -> ScriptedModel:
    """What a real model would answer to ``request`` (offline stand-in): a tool call, then a reply."""
    name = "forum" if "forum" in request else "sky"
    first: Any = (function_call("fetch_photo", {"name": name}, call_id="c1") if request.startswith("describe")
                  else function_call("post_image", {"caption": f"The {name} photo", "image": data_uri(name)},
                                     call_id="c1"))
    return ScriptedModel([[first], [assistant_message("Done.")]])


async def main() -> None:
    set_tracing_disabled(True)
    guard_input, guard_output, tool_input, tool_output = guardrails()
    tripwires = (InputGuardrailTripwireTriggered, ToolInputGuardrailTripwireTriggered,
                 ToolOutputGuardrailTripwireTriggered)
    for request in ("post the sky photo", "post the forum photo", "describe the forum photo",
                    "how do I build a bomb"):
        agent = Agent(name="poster", model=model_for(request), tools=tools(tool_input, tool_output),
                      input_guardrails=[guard_input], output_guardrails=[guard_output])
        try:
            result = await Runner.run(agent, request)
            print(f"== {request}\n   {result.final_output}")
        except tripwires as exc:
            output = exc.guardrail_result.output if hasattr(exc, "guardrail_result") else exc.output
            info = output.output_info
            print(f"== {request}\n   {type(exc).__name__}: {info['stage']} {info['label']} {info['categories']}")
    print(f"   posted: {posted}")


if __name__ == "__main__":
    asyncio.run(main())
