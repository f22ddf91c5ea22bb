"""Every name in the shipped .co and config.yml files is one the package defines (or one
NeMo ships), spelled the same everywhere; and the public surface is pinned."""

from __future__ import annotations

import re
from pathlib import Path

import nemoguardrails_omniguard as pkg
import pytest
import yaml
from nemoguardrails import RailsConfig
from nemoguardrails.utils import camelcase_to_snakecase
from nemoguardrails_omniguard import RAILS_DIR, RAILS_DIR_V2, names

TOOL_FLOWS = {names.TOOL_INPUT_FLOW, names.TOOL_OUTPUT_FLOW}
OURS = {
    "flows": {names.INPUT_FLOW, names.OUTPUT_FLOW, names.V2_ANSWER_FLOW, names.TOOL_RESUME_FLOW, *TOOL_FLOWS},
    "actions": {names.INPUT_ACTION, names.OUTPUT_ACTION, names.TOOL_INPUT_ACTION, names.TOOL_OUTPUT_ACTION,
                names.TOOL_PASSED_ACTION},
    "events": {names.INPUT_EXCEPTION, names.OUTPUT_EXCEPTION, names.TOOL_INPUT_EXCEPTION, names.TOOL_OUTPUT_EXCEPTION},
}
# NeMo's own names our Colang 2 wiring (main.co) uses
NEMO_FLOWS = {"main", "input rails", "output rails"}
NEMO_ACTIONS = {"PassthroughLLMAction"}
# NeMo's events the Colang 1 tool flows create or wait for (checked against NeMo's sources below)
NEMO_EVENTS = {"UserMessage", "ToolInputRailsFinished"}


def scan(path: Path) -> dict[str, set[str]]:
    """Flow, action and event names a Colang file defines or uses (quoted text excluded)."""
    code = re.sub(r'"[^"]*"', '""', path.read_text())
    flows = set(re.findall(r"^(?:define )?flow ([a-z][\w ]*?)(?: \$\w+)*\s*$", code, re.M))
    events = set(re.findall(r"(?:create event|send) (\w+)\(", code))
    events |= set(re.findall(r"^\s*event (\w+)\s*$", code, re.M))  # events a flow waits for
    v1_actions = set(re.findall(r"\bexecute (\w+)", code))
    v2_actions = set(re.findall(r"\bawait (\w+Action)\(", code))
    return {"flows": flows, "events": events, "v1_actions": v1_actions, "v2_actions": v2_actions}


def co_files() -> list[Path]:
    return sorted(Path(RAILS_DIR).glob("*.co")) + sorted(Path(RAILS_DIR_V2).glob("*.co"))


@pytest.mark.parametrize("path", co_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_name_in_the_co_files_is_known(path: Path):
    found = scan(path)
    assert found["flows"] <= OURS["flows"] | NEMO_FLOWS
    assert found["events"] <= OURS["events"] | NEMO_EVENTS
    assert found["v1_actions"] <= OURS["actions"]
    ours_v2 = {a for a in found["v2_actions"] if a not in NEMO_ACTIONS}
    # NeMo maps OmniguardCheckInputAction -> omniguard_check_input: the spelling must survive that
    assert {camelcase_to_snakecase(a.removesuffix("Action")) for a in ours_v2} <= OURS["actions"]


def test_the_colang_1_flows_define_every_rail_with_all_our_names():
    found = scan(Path(RAILS_DIR) / "flows.v1.co")
    assert found["flows"] == {names.INPUT_FLOW, names.OUTPUT_FLOW, names.TOOL_RESUME_FLOW, *TOOL_FLOWS}
    assert found["events"] == OURS["events"] | NEMO_EVENTS
    assert found["v1_actions"] == OURS["actions"]


def test_the_colang_2_flows_define_the_input_and_output_rails():
    """NeMo 0.24.1 runs tool rails from its Colang 1 flows only."""
    found = scan(Path(RAILS_DIR_V2) / "flows.co")
    actions = {camelcase_to_snakecase(a.removesuffix("Action")) for a in found["v2_actions"]}
    assert found["flows"] == {names.INPUT_FLOW, names.OUTPUT_FLOW}
    assert found["events"] == {names.INPUT_EXCEPTION, names.OUTPUT_EXCEPTION}
    assert actions == {names.INPUT_ACTION, names.OUTPUT_ACTION}


def test_the_passed_tool_calls_action_carries_its_name():
    assert pkg.omniguard_passed_tool_calls.action_meta["name"] == names.TOOL_PASSED_ACTION


def test_the_nemo_events_our_tool_flows_use_are_nemos():
    """Spelled as NeMo 0.24.1 creates them (ToolInputRailsFinished) and reads them
    (StartToolCallBotAction, sent by omniguard_passed_tool_calls: the calls that passed;
    UserMessage: what starts an answer)."""
    import nemoguardrails

    root = Path(nemoguardrails.__file__).parent
    flows = (root / "rails" / "llm" / "llm_flows.co").read_text()
    assert "create event ToolInputRailsFinished" in flows
    assert "create event StartToolCallBotAction(tool_calls=$tool_calls)" in flows
    assert '"type": "UserMessage"' in (root / "rails" / "llm" / "llmrails.py").read_text()
    assert 'event.get("type") == "StartToolCallBotAction"' in (root / "actions" / "llm" / "utils.py").read_text()


def test_config_yml_lists_our_flows():
    config = yaml.safe_load((Path(RAILS_DIR) / "config.yml").read_text())
    assert config["rails"]["input"]["flows"] == [names.INPUT_FLOW]
    assert config["rails"]["output"]["flows"] == [names.OUTPUT_FLOW]
    assert config["rails"]["tool_input"]["flows"] == [names.TOOL_INPUT_FLOW]
    assert config["rails"]["tool_output"]["flows"] == [names.TOOL_OUTPUT_FLOW]
    loaded = RailsConfig.from_path(RAILS_DIR).rails
    assert (loaded.tool_input.flows, loaded.tool_output.flows) == ([names.TOOL_INPUT_FLOW], [names.TOOL_OUTPUT_FLOW])
    main = scan(Path(RAILS_DIR_V2) / "main.co")
    assert {"input rails", "output rails"} <= main["flows"]
    wiring = (Path(RAILS_DIR_V2) / "main.co").read_text()
    assert f"flow input rails $input_text\n  {names.INPUT_FLOW}\n" in wiring
    assert f"flow output rails $output_text\n  {names.OUTPUT_FLOW}\n" in wiring


def test_the_folders_hold_one_colang_version_each():
    assert RailsConfig.from_path(RAILS_DIR).colang_version == "1.0"
    assert RailsConfig.from_path(RAILS_DIR_V2).colang_version == "2.x"


def test_refusal_is_what_nemo_says():
    import nemoguardrails

    core = Path(nemoguardrails.__file__).parent / "colang" / "v2_x" / "library" / "core.co"
    assert f'flow bot refuse to respond\n    bot say "{names.REFUSAL}"' in core.read_text()


def test_actions_carry_their_public_names():
    assert pkg.omniguard_check_input.action_meta["name"] == names.INPUT_ACTION
    assert pkg.omniguard_check_output.action_meta["name"] == names.OUTPUT_ACTION
    assert pkg.omniguard_check_tool_input.action_meta["name"] == names.TOOL_INPUT_ACTION
    assert pkg.omniguard_check_tool_output.action_meta["name"] == names.TOOL_OUTPUT_ACTION
    for fn in (pkg.omniguard_check_input, pkg.omniguard_check_output, pkg.omniguard_check_tool_input,
               pkg.omniguard_check_tool_output):
        assert fn.action_meta["is_system_action"] is True


def test_public_names():
    assert pkg.__all__ == sorted(pkg.__all__, key=lambda n: (not n.isupper(), n))
    assert set(pkg.__all__) == {
        "INPUT_ACTION", "INPUT_EXCEPTION", "INPUT_FLOW", "JUDGE_PARAM", "OUTPUT_ACTION",
        "OUTPUT_EXCEPTION", "OUTPUT_FLOW", "RAILS_DIR", "RAILS_DIR_V2", "REFUSAL", "STREAM_SETTINGS_KEY",
        "TOOL_INPUT_ACTION", "TOOL_INPUT_EXCEPTION", "TOOL_INPUT_FLOW", "TOOL_OUTPUT_ACTION",
        "TOOL_OUTPUT_EXCEPTION", "TOOL_OUTPUT_FLOW", "blocked_chunk", "omniguard_check_input",
        "omniguard_check_output", "omniguard_check_tool_input", "omniguard_check_tool_output",
        "outcome_from_verdict", "register", "stream", "TOOL_RESUME_FLOW", "V2_ANSWER_FLOW",
        "TOOL_PASSED_ACTION", "omniguard_passed_tool_calls",
    }
