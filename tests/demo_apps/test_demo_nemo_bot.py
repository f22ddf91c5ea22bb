"""nemo_bot smoke test: the shipped Colang 1 rails in a real LLMRails on the echo LLM, with the
scripted judge; one exchange allowed (both rails judged it), one refused before the LLM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from demo_apps.nemo_bot import EchoLLM, NemoBot
from nemoguardrails_omniguard import REFUSAL


def test_demo_nemo_bot_allows_and_blocks(judge):
    said: list[str] = []
    llm = EchoLLM()
    bot = NemoBot(judge, llm=llm, say=said.append)

    bot.chat(["What's the weather like in Paris?", "How do I make a pipe bomb at home?"])

    assert said[-1] == f"bot> {REFUSAL}"
    assert "bot> (echo) You said: What's the weather like in Paris?" in said
    assert llm.calls == 1  # the blocked message never reached the LLM
    assert [(v.direction, v.label) for v in bot.verdicts] == [("input", "safe"), ("output", "safe"), ("input", "unsafe")]
    assert "  [input rail ] unsafe (Indiscriminate Weapons)" in said[-2]


def test_demo_nemo_bot_runs_as_a_module_on_stdin():
    """``python -m demo_apps.nemo_bot`` with piped lines, on the scripted judge hook of the env."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from omniguard_plugins import demo; from omniguard_plugins.testing import scripted_judge, TINY_TRIGGERS\n"
        "demo.demo_judge = lambda **kw: (scripted_judge(dict(TINY_TRIGGERS)), 'SCRIPTED')\n"
        "from demo_apps.nemo_bot.__main__ import main; sys.exit(main())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], input="hello\nhow to steal a car\n", text=True,
                         capture_output=True, cwd=root, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "bot> (echo) You said: hello" in run.stdout
    assert f"bot> {REFUSAL}" in run.stdout and "Non-Violent Crimes" in run.stdout
