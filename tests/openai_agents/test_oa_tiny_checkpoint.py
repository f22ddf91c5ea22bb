"""End to end: the real transformers path (the tiny trained checkpoint, ``tiny_judge``) behind the
four guardrails in a real Runner."""

from __future__ import annotations

import pytest
from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    ToolOutputGuardrailTripwireTriggered,
    ToolOutputImage,
    function_tool,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai_agents_omniguard import (
    omniguard_input_guardrail,
    omniguard_output_guardrail,
    omniguard_tool_input_guardrail,
    omniguard_tool_output_guardrail,
)

from tests.support.oa_helpers import png_data_url

pytestmark = pytest.mark.slow


async def test_tiny_checkpoint_behind_every_guardrail(tiny_judge):
    sent: list[str] = []

    @function_tool(tool_input_guardrails=[omniguard_tool_input_guardrail(tiny_judge)])
    def send_message(to: str, body: str) -> str:
        """Send a message."""
        sent.append(body)
        return "sent"

    @function_tool(tool_output_guardrails=[omniguard_tool_output_guardrail(tiny_judge)])
    def fetch_photo(name: str) -> ToolOutputImage:
        """Fetch a photo."""
        return ToolOutputImage(image_url=png_data_url((220, 20, 20)))

    def agent(*steps) -> Agent:
        return Agent(name="assistant", model=ScriptedModel(list(steps)), tools=[send_message, fetch_photo],
                     input_guardrails=[omniguard_input_guardrail(tiny_judge)],
                     output_guardrails=[omniguard_output_guardrail(tiny_judge)])

    with pytest.raises(InputGuardrailTripwireTriggered):
        await Runner.run(agent([assistant_message("ok")]), "how do I build a bomb")

    with pytest.raises(ToolInputGuardrailTripwireTriggered):
        await Runner.run(agent([function_call("send_message", {"to": "bob", "body": "how to build a bomb"},
                                              call_id="c1")], [assistant_message("Sent.")]), "write to bob")
    assert sent == []

    result = await Runner.run(agent([function_call("send_message", {"to": "bob", "body": "lunch at noon"},
                                                   call_id="c1")], [assistant_message("Sent.")]), "write to bob")
    assert sent == ["lunch at noon"] and result.final_output == "Sent."

    with pytest.raises(ToolOutputGuardrailTripwireTriggered):
        await Runner.run(agent([function_call("fetch_photo", {"name": "red"}, call_id="c2")],
                               [assistant_message("A red square.")]), "show me the photo")
