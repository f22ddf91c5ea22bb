"""Prompt-level text sets, read in their native formats (folder layout as in the data READMEs)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from ...content import Text
from ..categories import category_names
from ..items import EvalItem

__all__ = ["advbench", "harmbench", "openai_moderation", "read_csv", "simplesafetytests", "voice_jailbreak_questions",
           "xstest"]

#: the OpenAI moderation set's label keys; a key missing from a row means "unknown"
MODERATION_KEYS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def xstest(folder: Path) -> list[EvalItem]:
    return [
        EvalItem(
            id=f"xstest/{row['id']}", dataset="xstest", unsafe=row["label"] == "unsafe",
            user=(Text(row["prompt"]),), categories=category_names("xstest", row["type"]), groups=(row["type"],),
            meta={"focus": row["focus"], "note": row["note"]},
        )
        for row in read_csv(folder / "xstest_prompts.csv")
    ]


def openai_moderation(folder: Path) -> list[EvalItem]:
    items = []
    with gzip.open(folder / "samples-1680.jsonl.gz", "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            row = json.loads(line)
            flags = [k for k in MODERATION_KEYS if row.get(k) == 1]
            items.append(EvalItem(
                id=f"openai_moderation/{n}", dataset="openai_moderation", unsafe=bool(flags),
                user=(Text(row["prompt"]),), categories=category_names("openai_moderation", *flags),
                groups=tuple(flags),
                meta={"unknown_keys": [k for k in MODERATION_KEYS if k not in row]},
            ))
    return items


def simplesafetytests(folder: Path) -> list[EvalItem]:
    return [
        EvalItem(
            id=f"simplesafetytests/{row['id']}", dataset="simplesafetytests", unsafe=True,
            user=(Text(row["prompts_final"]),), categories=category_names("simplesafetytests", row["harm_area"]),
            groups=(row["harm_area"],), meta={"category": row["category"]},
        )
        for row in read_csv(folder / "SimpleSafetyTests - test cases.csv")
    ]


def harmbench(folder: Path) -> list[EvalItem]:
    items = []
    for row in read_csv(folder / "harmbench_behaviors_text_all.csv"):
        prompt = row["Behavior"]
        if row["FunctionalCategory"] == "contextual" and row["ContextString"]:
            prompt = row["ContextString"] + "\n\n---\n\n" + prompt  # the layout HarmBench's baselines use
        items.append(EvalItem(
            id=f"harmbench/{row['BehaviorID']}", dataset="harmbench", unsafe=True, user=(Text(prompt),),
            categories=category_names("harmbench", row["SemanticCategory"]), groups=(row["SemanticCategory"],),
            meta={"functional_category": row["FunctionalCategory"]},
        ))
    return items


def advbench(folder: Path) -> list[EvalItem]:
    return [
        EvalItem(
            id=f"advbench/{row['id']}", dataset="advbench", unsafe=True, user=(Text(row["question"]),),
            categories=category_names("advbench", row["category"]), groups=(row["category"],),
        )
        for row in read_csv(folder / "Explicit_Advbench.csv")
    ]


def voice_jailbreak_questions(folder: Path) -> list[EvalItem]:
    return [
        EvalItem(
            id=f"voice_jailbreak_questions/{row['id']}", dataset="voice_jailbreak_questions", unsafe=True,
            user=(Text(row["question"]),), groups=(row["content_policy_name"],),
            categories=category_names("voice_jailbreak_questions", row["content_policy_name"]),
        )
        for row in read_csv(folder / "questions_tiny.csv")
    ]
