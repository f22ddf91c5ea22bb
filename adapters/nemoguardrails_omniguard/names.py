"""Every name the shipped ``.co`` files and ``config.yml`` use, once, so a test can hold them
to it (NeMo's own library shipped a misspelled exception event that nothing caught)."""

from __future__ import annotations

__all__ = [
    "INPUT_ACTION",
    "INPUT_EXCEPTION",
    "INPUT_FLOW",
    "JUDGE_PARAM",
    "OUTPUT_ACTION",
    "OUTPUT_EXCEPTION",
    "OUTPUT_FLOW",
    "REFUSAL",
    "TOOL_INPUT_ACTION",
    "TOOL_INPUT_EXCEPTION",
    "TOOL_INPUT_FLOW",
    "TOOL_OUTPUT_ACTION",
    "TOOL_OUTPUT_EXCEPTION",
    "TOOL_OUTPUT_FLOW",
    "TOOL_PASSED_ACTION",
    "TOOL_RESUME_FLOW",
    "V2_ANSWER_FLOW",
]

#: the flows a config lists under ``rails.input.flows`` / ``rails.output.flows``
INPUT_FLOW = "omniguard check input"
OUTPUT_FLOW = "omniguard check output"

#: the flows a config lists under ``rails.tool_input.flows`` (tool results, i.e. ``role: "tool"``
#: messages coming back to the model) and ``rails.tool_output.flows`` (the model's tool calls,
#: before the app runs them). NeMo's words: "input" and "output" are seen from the model.
TOOL_INPUT_FLOW = "omniguard check tool input"
TOOL_OUTPUT_FLOW = "omniguard check tool output"

#: Colang 1: answers the turn once the tool input rails passed (NeMo 0.24.1 stops there otherwise)
TOOL_RESUME_FLOW = "omniguard answer after tool input rails"

#: the Colang 2 folder's main.co: hands each (checked) user message to the main LLM
V2_ANSWER_FLOW = "omniguard answer with llm"

#: the actions the flows call (``execute omniguard_check_input`` in Colang 1,
#: ``await OmniguardCheckInputAction`` in Colang 2: NeMo maps one to the other)
INPUT_ACTION = "omniguard_check_input"
OUTPUT_ACTION = "omniguard_check_output"
TOOL_INPUT_ACTION = "omniguard_check_tool_input"
TOOL_OUTPUT_ACTION = "omniguard_check_tool_output"
#: the calls that passed the tool output rail (the Colang 1 flow hands them to NeMo after a block)
TOOL_PASSED_ACTION = "omniguard_passed_tool_calls"

#: the events sent instead of a refusal when ``enable_rails_exceptions`` is on; LLMRails
#: returns them as a message with role ``"exception"`` (Colang 1) or in ``"events"`` (Colang 2)
INPUT_EXCEPTION = "OmniGuardInputRailException"
OUTPUT_EXCEPTION = "OmniGuardOutputRailException"
TOOL_INPUT_EXCEPTION = "OmniGuardToolInputRailException"
TOOL_OUTPUT_EXCEPTION = "OmniGuardToolOutputRailException"

#: the action parameter a judge is injected as (``rails.register_action_param``)
JUDGE_PARAM = "omniguard_judge"

#: what ``bot refuse to respond`` says in NeMo 0.24 (both Colang versions) unless a config overrides it
REFUSAL = "I'm sorry, I can't respond to that."
