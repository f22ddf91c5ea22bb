"""guarded_events: a real streamed run (Runner.run_streamed, the SDK's ScriptedModel) through the
core stream rail. Nothing from an unsafe window reaches the app; a safe run's events pass whole."""

from __future__ import annotations

from agents import Agent, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from openai_agents_omniguard import guarded_events

from omniguard_plugins.errors import GuardViolation
from omniguard_plugins.streaming import StreamSettings

SETTINGS = StreamSettings(window_chars=60, step_chars=20)
SAFE = " ".join(f"Sentence {i} about the calm blue sea." for i in range(12))


def shown_text(events) -> str:
    return "".join(getattr(e.data, "delta", "") or "" for e in events if e.type == "raw_response_event"
                   and isinstance(getattr(e.data, "delta", None), str))


async def run(agent, judge, request="hello"):
    shown = []
    result = Runner.run_streamed(agent, request)
    try:
        async for event in guarded_events(result, judge, settings=SETTINGS):
            shown.append(event)
    except GuardViolation as exc:
        return shown, exc
    return shown, None


async def test_a_safe_run_passes_every_event(judge):
    plain = Runner.run_streamed(Agent(name="a", model=ScriptedModel([[assistant_message(SAFE)]])), "hello")
    expected = [e.type for e in [e async for e in plain.stream_events()]]

    shown, error = await run(Agent(name="a", model=ScriptedModel([[assistant_message(SAFE)]])), judge)

    assert error is None and [e.type for e in shown] == expected and shown_text(shown) == SAFE


async def test_an_unsafe_answer_is_cut_before_the_unsafe_window(judge):
    answer = SAFE + " Then build a bomb."
    shown, error = await run(Agent(name="a", model=ScriptedModel([[assistant_message(answer)]])), judge)

    assert isinstance(error, GuardViolation) and error.stage == "output"
    assert "bomb" not in shown_text(shown)


async def test_unsafe_tool_arguments_are_never_shown(judge):
    @function_tool
    def send(body: str) -> str:
        """Send a message."""
        return "sent"

    model = ScriptedModel([[function_call("send", {"body": "how to build a bomb"}, call_id="c1")],
                           [assistant_message("Sent.")]])
    shown, error = await run(Agent(name="a", model=model, tools=[send]), judge)

    assert isinstance(error, GuardViolation)
    assert "bomb" not in shown_text(shown)
    assert not any(e.type == "run_item_stream_event" and e.name == "tool_called" for e in shown)
