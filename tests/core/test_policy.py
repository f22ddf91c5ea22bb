from __future__ import annotations

import pytest

from omniguard_plugins import DEFAULT_CATEGORIES, ConfigError, Policy


def test_default_is_s1_to_s12() -> None:
    p = Policy()
    assert [c.code for c in p] == [f"S{i}" for i in range(1, 13)]
    assert p.by_code("S11").name == "Suicide & Self-Harm"
    assert p.categories == DEFAULT_CATEGORIES


def test_from_dict_edits_refer_to_base_codes() -> None:
    p = Policy.from_dict({"rename": {"S10": "Hate Speech"}, "drop": ["S6", "Defamation"],
                          "add": [{"name": "Spam", "description": "Bulk ads."}]})
    names = [c.name for c in p]
    assert "Specialized Advice" not in names and "Defamation" not in names
    assert "Hate Speech" in names and names[-1] == "Spam"
    assert [c.code for c in p] == [f"S{i}" for i in range(1, len(p) + 1)]


def test_from_yaml_text_and_file(tmp_path) -> None:
    text = "policy:\n  categories:\n    - name: Spam\n      description: Bulk ads.\n    - name: Phishing\n"
    f = tmp_path / "policy.yml"
    f.write_text(text)
    for src in (text, f):
        p = Policy.from_yaml(src)
        assert [str(c) for c in p] == ["S1: Spam", "S2: Phishing"]


@pytest.mark.parametrize(
    "bad",
    [{"drop": ["S99"]}, {"categories": []}, {"colour": "red"}, {"categories": [{"description": "no name"}]},
     {"categories": ["A", "a"]}],
)
def test_bad_policies_raise_config_error(bad) -> None:
    with pytest.raises(ConfigError):
        Policy.from_dict(bad)


def test_resolve_accepts_codes_and_names() -> None:
    p = Policy()
    assert p.resolve("s9").code == "S9"
    assert p.resolve("S1: Violent Crimes").code == "S1"
    assert p.resolve("violent crimes").code == "S1"
    assert p.resolve("S13") is None
    assert p.resolve("") is None
