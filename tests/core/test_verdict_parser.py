from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniguard_plugins import Policy
from omniguard_plugins.verdict import parse_output, truncate_to_verdict

POLICY = Policy()


@pytest.mark.parametrize(
    ("raw", "safe", "codes", "critique"),
    [
        ("- Safety Assessment: unsafe\n- Categories: S1, S10\n- Assessment: Violent and hateful.", False, ("S1", "S10"),
         "Violent and hateful."),
        ("- Safety Assessment: safe\n- Categories: None\n- Assessment: Harmless.", True, (), "Harmless."),
        ("- safety assessment: UNSAFE\n- categories: s9\n", False, ("S9",), None),
        ("  -  Safety Assessment :  Safe  \n- Categories:\n", True, (), None),
        ("- Safety Assessment: unsafe\n- Categories: Violent Crimes; Hate\n- Assessment: x", False, ("S1", "S10"), "x"),
        ("- Safety Assessment: unsafe\n- Categories: S1: Violent Crimes, S11: Suicide & Self-Harm", False,
         ("S1", "S11"), None),
        ("Sure! Here is my answer.\n- Safety Assessment: unsafe\n- Categories: [S2]\nThanks", False, ("S2",), None),
        ("**Safety Assessment:** unsafe\n**Categories:** S4", False, ("S4",), None),
        ("- Safety Assessment: safe\n- Categories: n/a\n- Assessment: The request is fine.\nIt asks for a recipe.",
         True, (), "The request is fine.\nIt asks for a recipe."),
        ("unsafe\nS1,S9", False, ("S1", "S9"), None),  # Llama Guard style
        ("safe", True, (), None),
        ("- Safety Assessment: unsafe", False, (), None),  # categories missing: still unsafe
    ],
)
def test_lenient_parsing(raw: str, safe: bool, codes: tuple[str, ...], critique: str | None) -> None:
    v = parse_output(raw, POLICY)
    assert v.error is None
    assert v.safe is safe
    assert v.category_codes == codes
    assert v.critique == critique
    assert v.raw == raw


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "I cannot help with that.", "- Safety Assessment: maybe\n- Categories: S1",
     "- Assessment: this looks safe to me", "- Safety Assessment: not safe", "<|im_end|>", "sa fe"],
)
def test_garbage_is_unparseable_and_never_safe(raw: str) -> None:
    v = parse_output(raw, POLICY)
    assert v.error == "unparseable"
    assert v.safe is False


def test_categories_resolve_to_the_policy_objects() -> None:
    policy = Policy.from_dict({"categories": [{"name": "Spam", "description": "Ads."}, {"name": "Scams"}]})
    v = parse_output("- Safety Assessment: unsafe\n- Categories: S2", policy)
    assert v.categories == (policy.categories[1],)
    assert v.categories[0].name == "Scams"


def test_truncate_to_verdict_keeps_label_and_categories() -> None:
    full = "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: long text"
    assert truncate_to_verdict(full) == "- Safety Assessment: unsafe\n- Categories: S1"


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parser_never_raises(raw: str) -> None:
    v = parse_output(raw, POLICY)
    assert isinstance(v.safe, bool)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="sS")))
def test_text_without_a_safe_label_is_never_safe(raw: str) -> None:
    # no letter "s" means no "safe" anywhere: whatever else it says, it must not pass
    assert parse_output(raw, POLICY).safe is False


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_noise_around_an_unsafe_label_never_turns_safe(before: str, after: str) -> None:
    raw = f"{before}\n- Safety Assessment: unsafe\n{after}"
    v = parse_output(raw, POLICY)
    if v.error is None and v.safe:
        # only possible if the noise itself holds an earlier, explicit safe label
        assert "safe" in before.lower()
