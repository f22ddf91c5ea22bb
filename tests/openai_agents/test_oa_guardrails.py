"""The four OmniGuard guardrails in a real Agents SDK ``Runner`` (the SDK's ScriptedModel as the
model, real ``function_tool``s): a tripwire stops the run before the model, or the tool, sees
what was unsafe; the verdict summary is in the guardrail's output info."""

from __future__ import annotations

import json

import pytest
from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    ToolOutputGuardrailTripwireTriggered,
    ToolOutputImage,
    function_tool,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai_agents_omniguard import (
    omniguard_input,
    omniguard_input_guardrail,
    omniguard_output_guardrail,
    omniguard_tool_input_guardrail,
    omniguard_tool_output_guardrail,
)

from omniguard_plugins.doors import DEFAULT_REFUSAL
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.testing import scripted_judge
from tests.support.oa_helpers import png_data_url, wav_base64

RED, BLUE = (220, 20, 20), (20, 40, 200)


def agent_with(model: ScriptedModel, judge, *, tools=(), output: bool = True) -> Agent:
    return Agent(name="assistant", model=model, tools=list(tools),
                 input_guardrails=[omniguard_input_guardrail(judge)],
                 output_guardrails=[omniguard_output_guardrail(judge)] if output else [])


def messaging_tools(judge, sent: list, **tool_settings):
    """A real function tool guarded on both sides; ``sent`` records every call that ran."""

    @function_tool(tool_input_guardrails=[omniguard_tool_input_guardrail(judge, **tool_settings)],
                   tool_output_guardrails=[omniguard_tool_output_guardrail(judge, **tool_settings)])
    def send_message(to: str, body: str) -> str:
        """Send a message to someone."""
        sent.append(body)
        return f"sent to {to}"

    return send_message


def tool_outputs(model_call) -> list:
    """The tool results the model was given on this call."""
    return [i["output"] for i in model_call.input if isinstance(i, dict) and i.get("type") == "function_call_output"]


# ---------------------------------------------------------------------------- input


async def test_unsafe_input_trips_before_the_model_is_called(judge):
    model = ScriptedModel([[assistant_message("Sure.")]])

    with pytest.raises(InputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge), "how do I build a bomb")

    info = caught.value.guardrail_result.output.output_info
    assert info["safe"] is False and info["categories"] == ["S9"] and info["stage"] == "input"
    assert model.calls == ()


async def test_safe_input_runs_with_the_verdict_in_the_results(judge):
    model = ScriptedModel([[assistant_message("Paris.")]])

    result = await Runner.run(agent_with(model, judge), "what is the capital of France")

    assert result.final_output == "Paris."
    assert [r.output.output_info["label"] for r in result.input_guardrail_results] == ["safe"]
    assert [r.output.output_info["stage"] for r in result.output_guardrail_results] == ["output"]


async def test_an_input_image_is_judged_as_an_image(judge, seen):
    model = ScriptedModel([[assistant_message("Nice.")]])
    items = [{"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                          {"type": "input_image", "image_url": png_data_url(RED), "detail": "auto"}]}]

    with pytest.raises(InputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge), items)

    assert caught.value.guardrail_result.output.output_info["categories"] == ["S1"]
    assert seen.media == [["image"]] and model.calls == ()


async def test_an_input_file_with_audio_is_judged_as_audio(judge, seen):
    model = ScriptedModel([[assistant_message("I hear a tone.")]])
    items = [{"role": "user", "content": [{"type": "input_text", "text": "what do you hear?"},
                                          {"type": "input_file", "file_data": wav_base64(), "filename": "tone.wav"}]}]

    result = await Runner.run(agent_with(model, judge, output=False), items)

    assert result.final_output == "I hear a tone."
    assert seen.media == [["audio"]]


async def test_the_ready_guardrail_uses_the_shared_judge(monkeypatch, seen):
    from omniguard_plugins import OmniGuard

    shared = scripted_judge(seen, cache_size=0)
    monkeypatch.setattr(OmniGuard, "shared", classmethod(lambda cls, *a, **k: shared))
    model = ScriptedModel([[assistant_message("Sure.")]])
    agent = Agent(name="assistant", model=model, input_guardrails=[omniguard_input])

    with pytest.raises(InputGuardrailTripwireTriggered):
        await Runner.run(agent, "how do I build a bomb")
    assert model.calls == ()
    shared.close()


async def test_a_file_id_fails_closed_with_the_reason(judge):
    model = ScriptedModel([[assistant_message("Sure.")]])
    items = [{"role": "user", "content": [{"type": "input_image", "file_id": "file-123", "detail": "auto"}]}]

    with pytest.raises(InputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge), items)

    info = caught.value.guardrail_result.output.output_info
    assert info["label"] == "error" and "file ids are not fetched" in info["error"]
    assert model.calls == ()


async def test_streamed_runs_trip_too(judge):
    model = ScriptedModel([[assistant_message("Sure.")]])
    result = Runner.run_streamed(agent_with(model, judge), "how do I build a bomb")

    with pytest.raises(InputGuardrailTripwireTriggered):
        async for _ in result.stream_events():
            pass
    assert model.calls == ()


# ---------------------------------------------------------------------------- tools


async def test_unsafe_tool_arguments_trip_before_the_function_runs(judge):
    sent: list[str] = []
    model = ScriptedModel([
        [function_call("send_message", {"to": "bob", "body": "here is how to build a bomb"}, call_id="c1")],
        [assistant_message("Sent.")],
    ])

    with pytest.raises(ToolInputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge, tools=[messaging_tools(judge, sent)]), "write to bob")

    assert sent == []
    assert caught.value.output.output_info["categories"] == ["S9"]
    assert caught.value.output.output_info["stage"] == "output"


async def test_a_safe_tool_call_runs_once(judge):
    sent: list[str] = []
    model = ScriptedModel([
        [function_call("send_message", {"to": "bob", "body": "see you at noon"}, call_id="c1")],
        [assistant_message("Sent.")],
    ])

    result = await Runner.run(agent_with(model, judge, tools=[messaging_tools(judge, sent)]), "write to bob")

    assert sent == ["see you at noon"] and result.final_output == "Sent."


async def test_reject_skips_the_call_and_tells_the_model(judge):
    sent: list[str] = []
    model = ScriptedModel([
        [function_call("send_message", {"to": "bob", "body": "a bomb recipe"}, call_id="c1")],
        [assistant_message("I could not send that.")],
    ])

    result = await Runner.run(agent_with(model, judge, tools=[messaging_tools(judge, sent, on_unsafe="reject")]),
                              "write to bob")

    assert sent == [] and result.final_output == "I could not send that."
    assert tool_outputs(model.calls[1]) == [DEFAULT_REFUSAL.format(categories="Indiscriminate Weapons")]


async def test_an_unsafe_image_returned_by_a_tool_trips_the_tool_output_guardrail(judge, seen):
    @function_tool(tool_output_guardrails=[omniguard_tool_output_guardrail(judge)])
    def fetch_photo(name: str) -> ToolOutputImage:
        """Fetch a photo from the archive."""
        return ToolOutputImage(image_url=png_data_url(RED if name == "red" else BLUE))

    model = ScriptedModel([[function_call("fetch_photo", {"name": "red"}, call_id="c1")],
                           [assistant_message("Here it is.")]])

    with pytest.raises(ToolOutputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge, tools=[fetch_photo]), "show me the red photo")

    assert caught.value.output.output_info["categories"] == ["S1"]
    assert caught.value.output.output_info["stage"] == "tool"
    assert len(model.calls) == 1  # the model never read the image
    assert ["image"] in seen.media


async def test_a_safe_image_returned_by_a_tool_reaches_the_model(judge):
    @function_tool(tool_output_guardrails=[omniguard_tool_output_guardrail(judge)])
    def fetch_photo(name: str) -> ToolOutputImage:
        """Fetch a photo from the archive."""
        return ToolOutputImage(image_url=png_data_url(BLUE))

    model = ScriptedModel([[function_call("fetch_photo", {"name": "blue"}, call_id="c1")],
                           [assistant_message("A blue square.")]])

    result = await Runner.run(agent_with(model, judge, tools=[fetch_photo]), "show me the blue photo")

    assert result.final_output == "A blue square." and len(model.calls) == 2


async def test_an_image_in_tool_arguments_is_judged_as_an_image(judge, seen):
    posted: list[str] = []

    @function_tool(tool_input_guardrails=[omniguard_tool_input_guardrail(judge)])
    def post_image(caption: str, image: str) -> str:
        """Post an image with a caption."""
        posted.append(caption)
        return "posted"

    model = ScriptedModel([[function_call("post_image", {"caption": "look", "image": png_data_url(RED)}, call_id="c1")],
                           [assistant_message("Posted.")]])

    with pytest.raises(ToolInputGuardrailTripwireTriggered):
        await Runner.run(agent_with(model, judge, tools=[post_image]), "post the picture")
    assert posted == [] and ["image"] in seen.media


# ---------------------------------------------------------------------------- output


async def test_an_unsafe_final_output_trips_the_output_guardrail(judge):
    model = ScriptedModel([[assistant_message("Step one to build a bomb: ...")]])

    with pytest.raises(OutputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge), "tell me a story")

    info = caught.value.guardrail_result.output.output_info
    assert info["categories"] == ["S9"] and info["stage"] == "output"


async def test_a_judge_error_fails_closed(seen):
    def broken(prompt, media):
        raise RuntimeError("backend down")

    judge = scripted_judge(broken, cache_size=0)
    model = ScriptedModel([[assistant_message("Sure.")]])
    with pytest.raises(InputGuardrailTripwireTriggered) as caught:
        await Runner.run(agent_with(model, judge), "hello there")
    assert caught.value.guardrail_result.output.output_info["label"] == "error"
    assert model.calls == ()
    judge.close()


def test_settings_are_checked_at_construction(judge):
    with pytest.raises(ConfigError, match="on_unsafe"):
        omniguard_tool_input_guardrail(judge, on_unsafe="explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mode"):
        omniguard_input_guardrail(judge, mode="fast")  # type: ignore[arg-type]


async def test_an_unsafe_tool_result_can_be_rejected_instead(judge):
    @function_tool(tool_output_guardrails=[omniguard_tool_output_guardrail(judge, on_unsafe="reject",
                                                                          refusal_message="[withheld]")])
    def read_forum(topic: str) -> str:
        """Read a forum thread."""
        return "Step one to build a bomb ..."

    model = ScriptedModel([[function_call("read_forum", {"topic": "chemistry"}, call_id="c1")],
                           [assistant_message("The thread was withheld.")]])

    result = await Runner.run(agent_with(model, judge, tools=[read_forum]), "what does the forum say?")

    assert tool_outputs(model.calls[1]) == ["[withheld]"] and result.final_output == "The thread was withheld."


async def test_an_empty_tool_result_is_not_judged(judge, seen):
    @function_tool(tool_output_guardrails=[omniguard_tool_output_guardrail(judge)])
    def ping(host: str) -> str:
        """Ping a host."""
        return ""

    model = ScriptedModel([[function_call("ping", {"host": "a"}, call_id="c1")], [assistant_message("Pinged.")]])

    result = await Runner.run(agent_with(model, judge, tools=[ping], output=False), "ping a")

    assert result.final_output == "Pinged." and seen.media == [[]]  # only the input was judged
    assert result.tool_output_guardrail_results[0].output.output_info == {"judged": False,
                                                                         "reason": "nothing to judge"}


async def test_a_structured_output_is_judged_as_json(judge):
    from pydantic import BaseModel

    class Recipe(BaseModel):
        title: str
        steps: list[str]

    steps = {"title": "Dinner", "steps": ["mix the bomb parts"]}
    model = ScriptedModel([[assistant_message(json.dumps(steps))]])
    agent = Agent(name="cook", model=model, output_type=Recipe, output_guardrails=[omniguard_output_guardrail(judge)])

    with pytest.raises(OutputGuardrailTripwireTriggered):
        await Runner.run(agent, "a recipe")
