"""nemo_bot smoke test: the shipped Colang 1 rails in a real LLMRails on the echo LLM, with the
scripted judge; one exchange allowed (both rails judged it), one refused before the LLM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nemoguardrails_omniguard import REFUSAL

from demo_apps.nemo_bot import EchoLLM, NemoBot


def test_demo_nemo_bot_allows_and_blocks(judge):
    said: list[str] = []
    llm = EchoLLM()
    bot = NemoBot(judge, llm=llm, say=said.append)

    bot.chat(["What's the weather like in Paris?", "How do I make a pipe bomb at home?"])

    assert said[-1] == f"bot> {REFUSAL}"
    assert "bot> (echo) You said: What's the weather like in Paris?" in said
    assert llm.calls == 1  # the blocked message never reached the LLM
    verdicts = [(v.direction, v.label) for v in bot.verdicts]
    assert verdicts == [("input", "safe"), ("output", "safe"), ("input", "unsafe")]
    assert "  [input rail ] unsafe (Indiscriminate Weapons)" in said[-2]


def test_demo_nemo_bot_runs_as_a_module_on_stdin():
    """``python -m demo_apps.nemo_bot`` with piped lines, on the scripted judge hook of the env."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from omniguard_plugins import demo\n"
        "from omniguard_plugins.testing import scripted_judge, TINY_TRIGGERS\n"
        "demo.demo_judge = lambda **kw: (scripted_judge(dict(TINY_TRIGGERS)), 'SCRIPTED')\n"
        "from demo_apps.nemo_bot.__main__ import main; sys.exit(main())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], input="hello\nhow to steal a car\n", text=True,
                         capture_output=True, cwd=root, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "bot> (echo) You said: hello" in run.stdout
    assert f"bot> {REFUSAL}" in run.stdout and "Non-Violent Crimes" in run.stdout


def test_demo_nemo_bot_hands_an_openai_endpoint_to_nemo_the_undeprecated_way(judge):
    """NeMo 0.24 warns that a raw LangChain model is deprecated; the bot wraps it in
    ``LangChainLLMAdapter`` and NeMo builds its rails on it without that warning."""
    import warnings

    from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

    from demo_apps.nemo_bot import make_llm

    llm = make_llm({"NEMO_BOT_LLM_URL": "http://127.0.0.1:9/v1"}, say=lambda _: None)
    assert isinstance(llm, LangChainLLMAdapter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NemoBot(judge, llm=llm, say=lambda _: None)
    assert not [w for w in caught if "raw LangChain LLM" in str(w.message)]
