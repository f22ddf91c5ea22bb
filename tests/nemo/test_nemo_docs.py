"""docs/nemo.md says what happens: its setup snippet runs as written and builds the rails the
way NeMo 0.24 asks for (no deprecated raw LangChain model)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

DOC = Path(__file__).resolve().parents[2] / "docs" / "nemo.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_setup_snippet_runs_without_a_deprecation_warning(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")  # ChatOpenAI wants one; nothing is sent
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(python_blocks()[0], namespace)  # noqa: S102 - the doc's own snippet
    assert isinstance(namespace["rails"].llm, LangChainLLMAdapter)
    assert not [w for w in caught if "deprecated" in str(w.message) and "LangChain" in str(w.message)]


def test_no_snippet_hands_nemo_a_raw_model() -> None:
    assert not any("llm=my_llm" in block or "llm=chat)" in block for block in python_blocks())
