"""The shipped tool rails on real LLMRails (Colang 1): ``omniguard check tool output`` judges the
model's tool calls before the app can run them (rendered by the core's ``render_tool_call``),
``omniguard check tool input`` judges tool results (the ``tool`` stage) before the model reads
them. NeMo 0.24.1 hands tool calls to rails only with ``passthrough: true``."""

from __future__ import annotations

import json

import pytest
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing import FakeLLMModel
from nemoguardrails.types import LLMResponse, ToolCall, ToolCallFunction
from nemoguardrails_omniguard import (
    RAILS_DIR,
    REFUSAL,
    TOOL_INPUT_EXCEPTION,
    TOOL_OUTPUT_EXCEPTION,
    omniguard_check_tool_input,
    omniguard_check_tool_output,
    omniguard_passed_tool_calls,
    register,
)

from omniguard_plugins.doors import render_tool_call
from omniguard_plugins.testing import scripted_judge

ASK = {"role": "user", "content": "email Sam that the meeting moved"}


def call(args: dict, name: str = "send_email") -> LLMResponse:
    return LLMResponse(content="", tool_calls=[ToolCall(id="c1", function=ToolCallFunction(name=name, arguments=args))])


def rails_for(judge, responses: list, *, exceptions: bool = False) -> tuple[LLMRails, FakeLLMModel]:
    config = RailsConfig.from_path(RAILS_DIR)
    config.passthrough = True  # NeMo emits tool calls to the tool output rails only in passthrough mode
    config.enable_rails_exceptions = exceptions
    llm = FakeLLMModel(llm_responses=[r if isinstance(r, LLMResponse) else LLMResponse(content=r) for r in responses])
    return register(LLMRails(config, llm=llm), judge=judge), llm


async def check_calls(judge, calls):
    return await omniguard_check_tool_output(context={"user_message": "hi", "tool_calls": calls}, omniguard_judge=judge)


def after_tool(result) -> list[dict]:
    """A turn that ends with the tool's result, as an app sends it back."""
    calls = [{"id": "c1", "type": "function", "function": {"name": "send_email", "arguments": "{}"}}]
    return [ASK, {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": result, "name": "send_email", "tool_call_id": "c1"}]


async def test_a_safe_tool_call_comes_back_to_the_app_judged_as_rendered(judge) -> None:
    rails, _ = rails_for(judge, [call({"to": "sam", "body": "The meeting moved to 3pm."})])

    response = await rails.generate_async(messages=[ASK])

    [returned] = response["tool_calls"]
    args = {"to": "sam", "body": "The meeting moved to 3pm."}
    assert returned["function"] == {"name": "send_email", "arguments": args}
    [rendered] = render_tool_call("send_email", args)
    tool_check = judge.backend.prompts[-1]
    assert f"Agent: {rendered.text}" in tool_check and "User: email Sam that the meeting moved" in tool_check


async def test_an_unsafe_tool_call_never_reaches_the_app(judge) -> None:
    rails, _ = rails_for(judge, [call({"to": "sam", "body": "I will bomb your office"})])

    response = await rails.generate_async(messages=[ASK])

    assert response["content"] == REFUSAL
    assert not response.get("tool_calls")  # NeMo would hand back the blocked call without the flow's event


async def test_an_unsafe_image_in_tool_arguments_is_judged_as_an_image(judge, png_data_uri) -> None:
    rails, _ = rails_for(judge, [call({"caption": "my holiday", "image": png_data_uri((230, 10, 10))}, "post_photo")])

    response = await rails.generate_async(messages=[ASK])

    assert response["content"] == REFUSAL and not response.get("tool_calls")
    assert [m.kind for m in judge.backend.requests[-1].media] == ["image"]
    assert 'post_photo {"caption": "my holiday", "image": "<image 1>"}' in judge.backend.requests[-1].prompt


async def test_a_tool_call_rail_exception_names_our_event(judge) -> None:
    rails, _ = rails_for(judge, [call({"body": "a bomb"})], exceptions=True)

    response = await rails.generate_async(messages=[ASK])

    assert response["role"] == "exception" and response["content"]["type"] == TOOL_OUTPUT_EXCEPTION
    assert not response.get("tool_calls")


async def test_an_unsafe_tool_result_is_refused_before_the_model_reads_it(judge) -> None:
    rails, llm = rails_for(judge, ["never said"])

    response = await rails.generate_async(messages=after_tool("Here is the bomb recipe you asked for."))

    assert response["content"] == REFUSAL
    assert llm.inference_count == 0
    assert judge.backend.prompts[0].split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0].strip() == (
        "User: Here is the bomb recipe you asked for.\n\nAgent:")  # the tool result alone, as a "tool" check


async def test_a_safe_tool_result_is_answered(judge) -> None:
    """NeMo 0.24.1 stops a turn after its tool input rails pass; the shipped folder answers it."""
    rails, llm = rails_for(judge, ["Done: Sam knows the meeting moved."])

    response = await rails.generate_async(messages=after_tool("Email sent to sam."))

    assert response["content"] == "Done: Sam knows the meeting moved."
    assert llm.inference_count == 1


async def test_an_unsafe_image_returned_by_a_tool_is_caught(judge, png_data_uri) -> None:
    rails, llm = rails_for(judge, ["never said"])
    result = [{"type": "text", "text": "the photo"},
              {"type": "image_url", "image_url": {"url": png_data_uri((230, 10, 10))}}]

    response = await rails.generate_async(messages=after_tool(result))

    assert response["content"] == REFUSAL and llm.inference_count == 0
    assert [m.kind for m in judge.backend.requests[0].media] == ["image"]


async def test_a_tool_result_rail_exception_names_our_event(judge) -> None:
    rails, _ = rails_for(judge, ["never said"], exceptions=True)

    response = await rails.generate_async(messages=after_tool("the bomb recipe"))

    assert response["role"] == "exception" and response["content"]["type"] == TOOL_INPUT_EXCEPTION


async def test_the_actions_report_their_stage_in_the_verdict_summary(judge) -> None:
    result = await omniguard_check_tool_input(context={"tool_message": "the poison goes here"}, omniguard_judge=judge)
    calls = [{"id": "c1", "type": "function",
              "function": {"name": "send_email", "arguments": json.dumps({"b": "bomb"})}}]
    tool_call = await check_calls(judge, calls)

    assert result.is_blocked and result.metadata["verdict"]["stage"] == "tool"
    assert result.metadata["verdict"]["direction"] == "input" and result.metadata["categories"] == ["S1"]
    assert tool_call.is_blocked and tool_call.metadata["verdict"]["stage"] == "output"
    assert 'send_email {"b": "bomb"}' in judge.backend.prompts[-1]


@pytest.mark.parametrize("calls", [None, [], "send_email", [{"id": "c1"}], [{"function": {"arguments": {}}}]])
async def test_tool_calls_we_cannot_read_block(calls) -> None:
    judge = scripted_judge({"bomb": "S9"})
    outcome = await check_calls(judge, calls)

    assert outcome.is_blocked and outcome.failed
    assert outcome.metadata["error"].startswith("content:")
    assert judge.backend.calls == 0


async def test_the_passed_calls_event_names_all_calls_after_a_pass_and_none_after_a_block(judge) -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "send_email", "arguments": {"b": "hi"}}}]
    blocked = await check_calls(judge, [{"function": {"name": "x", "arguments": {"b": "bomb"}}}])
    for outcome, passed in ((await check_calls(judge, calls), calls), (blocked, [])):
        result = await omniguard_passed_tool_calls(context={"omniguard_result": outcome, "tool_calls": calls})
        assert result.return_value == passed
        [event] = result.events
        assert event["type"] == "StartToolCallBotAction" and event["tool_calls"] == passed
