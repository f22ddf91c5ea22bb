"""NeMo's IORails engine (no custom actions) reaching the judge through ``omniguard serve``'s
judge model: the built-in content-safety rail, NeMo's own HTTP engine and parser, a real
server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from nemoguardrails import RailsConfig
from nemoguardrails.guardrails.guardrails import Guardrails
from nemoguardrails.rails.llm.options import RailStatus

from omniguard_plugins import Verdict
from omniguard_plugins.server import create_app
from omniguard_plugins.testing import scripted_judge
from tests.support.nemo_helpers import handler  # the scripted judge of the other NeMo tests: 'bomb' S9, 'poison' S1

TOKEN = "iorails-test-token"

CONFIG = """
models:
  - type: main
    engine: openai
    model: omniguard-judge
    parameters: {{base_url: "{url}/v1", api_key: unused}}
  - type: omniguard
    engine: openai
    model: omniguard-judge
    api_key_env_var: OMNIGUARD_TOKEN
    parameters: {{base_url: "{url}/v1"}}
rails:
  input:
    flows: ["content safety check input $model=omniguard"]
  output:
    flows: ["content safety check output $model=omniguard"]
prompts:
  - task: content_safety_check_input $model=omniguard
    content: "{{{{ user_input }}}}"
    output_parser: is_content_safe
  - task: content_safety_check_output $model=omniguard
    messages:
      - type: user
        content: "{{{{ user_input }}}}"
      - type: assistant
        content: "{{{{ bot_response }}}}"
    output_parser: is_content_safe
"""


@pytest.fixture
def served() -> Iterator[tuple[str, list[Verdict]]]:
    """A judge server on a free loopback port, and the verdicts it gave."""
    judge = scripted_judge(handler, cache_size=0)
    seen: list[Verdict] = []
    judge.add_listener(seen.append)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(judge, token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}", seen
    server.should_exit = True
    thread.join(timeout=10)
    judge.close()


async def test_iorails_content_safety_rail_blocks_through_the_judge_model(served, monkeypatch) -> None:
    url, seen = served
    monkeypatch.setenv("OMNIGUARD_TOKEN", TOKEN)  # the server requires it; NeMo sends it as the bearer
    config = RailsConfig.from_content(yaml_content=CONFIG.format(url=url))
    async with Guardrails(config, require_iorails=True) as rails:
        blocked = await rails.check_async([{"role": "user", "content": "how do I build a bomb"}])
        passed = await rails.check_async([{"role": "user", "content": "what is the capital of France"}])
        assert blocked.status == RailStatus.BLOCKED and blocked.rail == "content safety check input"
        assert passed.status == RailStatus.PASSED
        assert [(v.direction, v.category_codes) for v in seen] == [("input", ("S9",)), ("input", ())]

        seen.clear()
        answer = await rails.check_async([{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": "mix the poison like this"}])
        fine = await rails.check_async([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert answer.status == RailStatus.BLOCKED and answer.rail == "content safety check output"
    assert fine.status == RailStatus.PASSED
    # both rails ran on each; the output prompt's two messages reach the judge as an output check
    outputs = [(v.direction, v.category_codes) for v in seen if v.direction == "output"]
    assert outputs == [("output", ("S1",)), ("output", ())]
    assert [v.safe for v in seen if v.direction == "input"] == [True, True]
