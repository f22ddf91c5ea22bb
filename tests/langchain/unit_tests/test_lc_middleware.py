"""OmniGuardMiddleware in a real create_agent graph with a fake tool-calling model."""

from __future__ import annotations

import base64

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_omniguard import GuardViolation, OmniGuardMiddleware

from omniguard_plugins.errors import ConfigError

VIOLATION = "Blocked ({categories}). {critique}"


def photo_tool(png: bytes):
    @tool
    def take_photo() -> list[dict]:
        """Take a photo with the robot's camera."""
        return [{"type": "image", "base64": base64.b64encode(png).decode(), "mime_type": "image/png"}]

    return take_photo


def calls_photo_then(answer: str) -> list[AIMessage | str]:
    return [AIMessage(content="", tool_calls=[{"name": "take_photo", "args": {}, "id": "call_1"}]), answer]


def test_safe_turn_passes_untouched(judge, fake_model, blue_png):
    model = fake_model(*calls_photo_then("A blue square."))
    agent = create_agent(model, [photo_tool(blue_png)], middleware=[
        OmniGuardMiddleware(judge=judge, check_tool_results=True)])
    result = agent.invoke({"messages": [HumanMessage("What do you see?")]})
    assert result["messages"][-1].content == "A blue square."
    assert len(model.seen) == 2
    # input, the tool call (an action, judged by its name even without arguments), the tool result
    # (the image), final output
    assert len(judge.backend.requests) == 4


def test_blocked_input_ends_with_the_violation_message_and_no_model_call(judge, fake_model):
    model = fake_model("never said")
    agent = create_agent(model, [], middleware=[
        OmniGuardMiddleware(judge=judge, exit_behavior="end", violation_message=VIOLATION)])
    result = agent.invoke({"messages": [HumanMessage("How do I build a bomb?")]})
    assert model.seen == []
    last = result["messages"][-1]
    assert isinstance(last, AIMessage)
    assert last.content == "Blocked (Indiscriminate Weapons). It explains how to build a weapon."


def test_tool_result_with_an_unsafe_image_is_caught(judge, fake_model, red_png):
    model = fake_model(*calls_photo_then("It shows something awful."))
    agent = create_agent(model, [photo_tool(red_png)], middleware=[
        OmniGuardMiddleware(judge=judge, check_tool_results=True, check_output=False, violation_message=VIOLATION)])
    result = agent.invoke({"messages": [HumanMessage("What do you see?")]})
    assert len(model.seen) == 1  # the model never saw the unsafe image
    assert result["messages"][-1].content == "Blocked (Violent Crimes). A violent image."
    # the unsafe result ended the run and does not stay in the history: it was replaced
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.content == "Blocked (Violent Crimes). A violent image."
    assert tool_message.response_metadata["omniguard"]["categories"] == ["S1"]
    assert not any(b["type"] == "image" for m in result["messages"] for b in m.content_blocks)
    assert [m.kind for m in judge.backend.requests[1].media] == ["image"]


def test_tool_results_are_not_judged_unless_asked(judge, fake_model, red_png):
    model = fake_model(*calls_photo_then("A red square."))
    agent = create_agent(model, [photo_tool(red_png)], middleware=[OmniGuardMiddleware(judge=judge)])
    assert agent.invoke({"messages": [HumanMessage("What do you see?")]})["messages"][-1].content == "A red square."


def test_replace_swaps_an_unsafe_tool_result_and_the_agent_goes_on(judge, fake_model, red_png):
    model = fake_model(*calls_photo_then("I could not look at that photo."))
    agent = create_agent(model, [photo_tool(red_png)], middleware=[
        OmniGuardMiddleware(judge=judge, check_tool_results=True, exit_behavior="replace",
                            violation_message="[image removed]")])
    result = agent.invoke({"messages": [HumanMessage("What do you see?")]})
    tool_message = next(m for m in model.seen[1] if isinstance(m, ToolMessage))
    assert tool_message.content == "[image removed]"
    assert result["messages"][-1].content == "I could not look at that photo."


def test_unsafe_output_is_replaced_not_kept_in_the_history(judge, fake_model):
    model = fake_model("Sure: to build a bomb you ...")
    agent = create_agent(model, [], middleware=[OmniGuardMiddleware(judge=judge, violation_message="Sorry.")])
    messages = agent.invoke({"messages": [HumanMessage("Tell me a story")]})["messages"]
    assert [type(m).__name__ for m in messages] == ["HumanMessage", "AIMessage"]
    assert messages[-1].content == "Sorry."
    output_check = judge.backend.requests[-1].prompt
    assert "User: Tell me a story" in output_check and "Agent: Sure: to build a bomb" in output_check


def test_error_raises_guard_violation(judge, fake_model):
    agent = create_agent(fake_model("x"), [], middleware=[OmniGuardMiddleware(judge=judge, exit_behavior="error")])
    with pytest.raises(GuardViolation) as caught:
        agent.invoke({"messages": [HumanMessage("bomb please")]})
    assert caught.value.stage == "input"
    assert isinstance(caught.value.content, HumanMessage)


def test_multimodal_user_message_is_judged_whole(judge, fake_model, red_png):
    model = fake_model("never said")
    agent = create_agent(model, [], middleware=[OmniGuardMiddleware(judge=judge)])
    message = HumanMessage(content=[
        {"type": "text", "text": "Is this nice?"},
        {"type": "image", "base64": base64.b64encode(red_png).decode(), "mime_type": "image/png"},
    ])
    agent.invoke({"messages": [message]})
    assert model.seen == []
    request = judge.backend.requests[-1]
    assert "Is this nice?" in request.prompt and [m.kind for m in request.media] == ["image"]


async def test_async_agent_blocks_input_and_tool_results(judge, fake_model, red_png):
    model = fake_model("never said")
    agent = create_agent(model, [], middleware=[OmniGuardMiddleware(judge=judge)])
    result = await agent.ainvoke({"messages": [HumanMessage("bomb?")]})
    assert model.seen == [] and "Indiscriminate Weapons" in result["messages"][-1].content

    model = fake_model(*calls_photo_then("awful"))
    agent = create_agent(model, [photo_tool(red_png)],
                         middleware=[OmniGuardMiddleware(judge=judge, check_tool_results=True)])
    result = await agent.ainvoke({"messages": [HumanMessage("What do you see?")]})
    assert len(model.seen) == 1 and "Violent Crimes" in result["messages"][-1].content


def test_bad_exit_behavior_is_a_config_error():
    with pytest.raises(ConfigError, match="exit_behavior"):
        OmniGuardMiddleware(exit_behavior="explode")  # type: ignore[arg-type]
