"""The answer format in one module: what is written is what is read, and where it ends."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniguard_plugins import Policy
from omniguard_plugins.answer_format import (
    LABEL_PREFIX,
    VERDICT_STOP,
    short_form,
    stops_at_verdict,
    truncate_to_verdict,
    verdict_complete,
    write_answer,
)
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.verdict import Verdict, parse_output

POLICY = Policy()
CODES = [c.code for c in POLICY.categories]

# a critique is free text; the parser strips it and reads "no text" as no critique
critiques = st.text(min_size=1).map(str.strip).filter(bool)


@settings(max_examples=400, deadline=None)
@given(
    safe=st.booleans(),
    codes=st.lists(st.sampled_from(CODES), unique=True, max_size=6),
    critique=st.none() | critiques,
)
def test_what_write_answer_writes_parses_back(safe: bool, codes: list[str], critique: str | None) -> None:
    answer = write_answer(safe=safe, categories=codes, critique=critique)
    verdict = parse_output(answer, POLICY)
    assert verdict.error is None
    assert verdict.safe is safe
    assert verdict.category_codes == tuple(codes)
    assert verdict.critique == critique


@settings(max_examples=200, deadline=None)
@given(safe=st.booleans(), codes=st.lists(st.sampled_from(CODES), unique=True, max_size=4), critique=critiques)
def test_verdict_mode_cut_is_the_answer_without_its_critique(safe: bool, codes: list[str], critique: str) -> None:
    full = write_answer(safe=safe, categories=codes, critique=critique)
    assert truncate_to_verdict(full) == write_answer(safe=safe, categories=codes)
    # over HTTP the server stops at the first VERDICT_STOP: the same cut
    assert full[: min(full.find(s) for s in VERDICT_STOP if s in full)] == write_answer(safe=safe, categories=codes)


def test_write_answer_spells_the_trained_format() -> None:
    assert write_answer(safe=False, categories=["S1", "S10"], critique="Violent.") == (
        "- Safety Assessment: unsafe\n- Categories: S1, S10\n- Assessment: Violent.")
    assert write_answer(safe=True) == "- Safety Assessment: safe\n- Categories: None"
    assert write_answer(safe=True).startswith(LABEL_PREFIX)


@pytest.mark.parametrize("bad", ["S1, S2", "S1\nS2", "", "  "])
def test_write_answer_refuses_a_category_that_would_break_the_line(bad: str) -> None:
    with pytest.raises(ConfigError):
        write_answer(safe=False, categories=[bad])


def test_write_answer_refuses_an_empty_critique() -> None:
    with pytest.raises(ConfigError):
        write_answer(safe=True, critique="  ")


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("- Safety Assessment: unsafe\n- Categories: S1, S10\n", True),
        ("- Safety Assessment: unsafe\n- Categories: S1, S10", False),  # the codes may go on
        ("- Safety Assessment: unsafe\n- Categories: S1, S1", False),  # S1 may become S10
        ("- Safety Assessment: safe\n- Categories: None\n- Assessment: fine", True),
        ("- Safety Assessment: safe\n", False),
        ("- Safety Assessment: unsafe\n**Categories:** S4\n", True),
        ("- Safety Assessment: unsafe\n- Violated categories: S2\n", True),
        ("- Safety Assessment: unsafe\n- categories: s9\n", True),
        ("", False),
        ("The categories of this text are many\n", False),  # no field, just the word
    ],
)
def test_verdict_complete_once_the_categories_line_ends(text: str, complete: bool) -> None:
    assert verdict_complete(text) is complete


def test_verdict_complete_agrees_with_the_cut() -> None:
    text = write_answer(safe=False, categories=["S9"], critique="A bomb.")
    ends = [i for i in range(len(text) + 1) if verdict_complete(text[:i])]
    # complete from the newline after the Categories line on, never before
    assert ends and text[: ends[0]] == truncate_to_verdict(text) + "\n"


def test_stop_sequences_mark_a_verdict_mode_request() -> None:
    assert stops_at_verdict(VERDICT_STOP)
    assert stops_at_verdict(["</s>", "\n- Assessment:"])
    assert not stops_at_verdict([])
    assert not stops_at_verdict(["\n\n", "Assessment"])


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (parse_output("- Safety Assessment: safe\n- Categories: None", POLICY), "safe"),
        (parse_output("- Safety Assessment: unsafe\n- Categories: S1, S9", POLICY), "unsafe\nS1,S9"),
        (parse_output("- Safety Assessment: unsafe", POLICY), "unsafe"),
        (Verdict(safe=False, error="unparseable"), "unsafe"),  # a failed check never reads as safe
        (Verdict(safe=True, error="backend"), "safe"),  # on_error="allow" decided it
    ],
)
def test_short_form_is_llama_guards_answer(verdict: Verdict, expected: str) -> None:
    assert short_form(verdict) == expected


@settings(max_examples=100, deadline=None)
@given(safe=st.booleans(), codes=st.lists(st.sampled_from(CODES), unique=True, max_size=4))
def test_short_form_parses_back(safe: bool, codes: list[str]) -> None:
    verdict = parse_output(write_answer(safe=safe, categories=codes), POLICY)
    again = parse_output(short_form(verdict), POLICY)
    assert (again.error, again.safe) == (None, safe)
    if not safe:
        assert again.category_codes == tuple(codes)
