"""Sets whose rows are a conversation (GuardReasoner's converted copies, JailbreakBench artifacts)."""

from __future__ import annotations

import json
from pathlib import Path

from ...content import Text
from ...errors import ConfigError
from ..categories import category_names
from ..items import EvalItem

__all__ = ["aegis1_test", "harmbench_response", "jailbreakbench_artifacts", "jailbreakbench_prompts",
           "xstest_response"]

_USER, _AGENT = "Human user:\n", "\n\nAI assistant:\n"


def split_conversation(text: str) -> tuple[str, str | None]:
    """GuardReasoner's ``Human user:\\n{prompt}\\n\\nAI assistant:\\n{response}\\n\\n``; a response
    of ``None`` means there was none (Aegis)."""
    if not text.startswith(_USER) or _AGENT not in text:
        raise ConfigError(f"not a GuardReasoner conversation: {text[:60]!r}")
    user, _, agent = text[len(_USER):].partition(_AGENT)
    agent = agent.rstrip("\n")
    return user, (None if agent.strip() == "None" else agent)


def _guardreasoner(path: Path, dataset: str, *, response_level: bool) -> list[EvalItem]:
    items = []
    for n, row in enumerate(json.loads(path.read_text(encoding="utf-8")), start=1):
        user, agent = split_conversation(row["input"])
        if response_level and agent is None:
            raise ConfigError(f"{path.name} row {n} has no response to judge")
        items.append(EvalItem(
            id=f"{dataset}/{n}", dataset=dataset, unsafe=row["output"] == "harmful", user=(Text(user),),
            assistant=(Text(agent),) if response_level and agent is not None else None, has_categories=False,
        ))
    return items


def harmbench_response(folder: Path) -> list[EvalItem]:
    return _guardreasoner(folder / "0_5_harmbench_response.json", "harmbench_response", response_level=True)


def aegis1_test(folder: Path) -> list[EvalItem]:
    return _guardreasoner(folder / "0_1_AegisSafetyTest.json", "aegis1_test", response_level=False)


def xstest_response(folder: Path) -> list[EvalItem]:
    return _guardreasoner(folder / "0_6_xstest_response_harmful.json", "xstest_response", response_level=True)


def _jailbreaks(folder: Path) -> list[tuple[str, dict]]:
    """(artifact name, entry) for every entry with a prompt; PAIR rows with none are skipped."""
    out = []
    for path in sorted((folder / "attack-artifacts").glob("*/*/*.json")):
        name = "/".join(path.relative_to(folder / "attack-artifacts").with_suffix("").parts)
        for entry in json.loads(path.read_text(encoding="utf-8"))["jailbreaks"]:
            if entry.get("prompt"):
                out.append((name, entry))
    return out


def jailbreakbench_artifacts(folder: Path) -> list[EvalItem]:
    """The response task: ``jailbroken`` (JailbreakBench's LLM judge, not a human) -> unsafe."""
    return [
        EvalItem(
            id=f"jailbreakbench_artifacts/{name}/{e['index']}", dataset="jailbreakbench_artifacts",
            unsafe=bool(e["jailbroken"]), user=(Text(e["prompt"]),), assistant=(Text(e["response"] or ""),),
            # the goal's category describes the response only when the attack succeeded
            categories=category_names("jailbreakbench", e["category"]) if e["jailbroken"] else (),
            groups=(e["category"],),
            meta={"artifact": name, "goal": e["goal"], "behavior": e["behavior"], "label_source": "LLM judge"},
        )
        for name, e in _jailbreaks(folder)
    ]


def jailbreakbench_prompts(folder: Path) -> list[EvalItem]:
    """The prompt task: every jailbreak prompt rewrites a harmful goal, so all are unsafe."""
    return [
        EvalItem(
            id=f"jailbreakbench_prompts/{name}/{e['index']}", dataset="jailbreakbench_prompts", unsafe=True,
            user=(Text(e["prompt"]),), categories=category_names("jailbreakbench", e["category"]),
            groups=(e["category"],), meta={"artifact": name, "goal": e["goal"]},
        )
        for name, e in _jailbreaks(folder)
    ]
