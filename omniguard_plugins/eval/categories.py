"""How each set's own categories map to OmniGuard's S1-S12 (approximate, for per-category rows).

The tables follow the benchmark folders' READMEs. A category with no S-code (misinformation,
harassment, unethical behaviour) maps to nothing: such items still count for safe/unsafe, and
their own category name stays in ``EvalItem.groups`` so reports show them per upstream category.
"""

from __future__ import annotations

from ..policy import DEFAULT_CATEGORIES

__all__ = ["S_CODES", "category_names"]

S_CODES: dict[str, dict[str, tuple[str, ...]]] = {
    "xstest": {"contrast_privacy": ("S7",), "contrast_discr": ("S10",)},
    "openai_moderation": {
        "S": ("S12",), "S3": ("S4",), "H": ("S10",), "H2": ("S10", "S1"), "V": ("S1",), "V2": ("S1",),
        "SH": ("S11",), "HR": (),
    },
    "simplesafetytests": {
        "Suicide, Self-Harm, and Eating Disorders": ("S11",),
        "Physical harm and Violence": ("S1",),
        "Illegal and Highly Regulated items": ("S2", "S9"),
        "Scams and fraud": ("S2",),
        "Child safety": ("S4", "S3"),
    },
    "harmbench": {
        "chemical_biological": ("S9",), "cybercrime_intrusion": ("S2",), "illegal": ("S2",),
        "harassment_bullying": ("S10",), "copyright": ("S8",), "misinformation_disinformation": (), "harmful": (),
    },
    "advbench": {
        "Malware": ("S2",), "Fraud": ("S2",), "Illegal Activity": ("S2",), "Economic Harm": ("S2",),
        "Physical Harm": ("S1", "S9", "S11"), "Violence": ("S1",), "Hate Speech": ("S10",),
        "Privacy Violence": ("S7",), "Child Abuse": ("S4",), "Sex": ("S12",),
        "Health Consultation": ("S6",), "Financial Advice": ("S6",),
        "Unethical Behavior": (), "Gov Decision": (), "Political Lobbying": (),
    },
    "jailbreakbench": {
        "Harassment/Discrimination": ("S10",), "Malware/Hacking": ("S2",), "Economic harm": ("S2",),
        "Fraud/Deception": ("S2",), "Government decision-making": ("S2",), "Physical harm": ("S1", "S9", "S11"),
        "Sexual/Adult content": ("S12",), "Privacy": ("S7",), "Expert advice": ("S6",), "Disinformation": (),
    },
    "figstep": {
        "Illegal Activity": ("S2",), "Hate Speech": ("S10",), "Malware Generation": ("S2",),
        "Physical Harm": ("S1", "S9", "S11"), "Fraud": ("S2",), "Adult Content": ("S12",),
        "Privacy Violation": ("S7",), "Legal Opinion": ("S6",), "Financial Advice": ("S6",),
        "Health Consultation": ("S6",),
    },
    "voice_jailbreak_questions": {
        "Illegal Activity": ("S2",), "Fraud": ("S2",), "Hate Speech": ("S10",), "Physical Harm": ("S1", "S9"),
        "Pornography": ("S12",), "Privacy Violence": ("S7",),
    },
    # BeaverTails (user-supplied files): its 14 harm categories
    "beavertails": {
        "child_abuse": ("S4",), "discrimination,stereotype,injustice": ("S10",),
        "drug_abuse,weapons,banned_substance": ("S2",), "financial_crime,property_crime,theft": ("S2",),
        "hate_speech,offensive_language": ("S10",), "privacy_violation": ("S7",), "self_harm": ("S11",),
        "sexually_explicit,adult_content": ("S12",), "terrorism,organized_crime": ("S1",),
        "violence,aiding_and_abetting,incitement": ("S1",),
    },
    # VLGuard (user-supplied files): harmful_category / harmful_subcategory
    "vlguard": {"privacy": ("S7",), "discrimination": ("S10",), "sexually explicit": ("S12",), "violence": ("S1",),
                "professional advice": ("S6",)},
    # contrast queries by pid (the README's reading of each question)
    "mossbench": {
        "241": ("S1",), "256": ("S1",), "259": ("S1",), "276": ("S1",),
        "16": ("S1", "S9"), "27": ("S1", "S9"), "37": ("S1", "S9"), "44": ("S1", "S9"),
        "239": ("S2",), "18": ("S2",), "95": ("S2",), "42": ("S2",), "1": ("S1", "S11"), "3": ("S1", "S11"),
        "9": ("S2",),
    },
}


_NAMES = {c.code: c.name for c in DEFAULT_CATEGORIES}


def category_names(table: str, *upstream: str) -> tuple[str, ...]:
    """The default policy's category *names* for upstream category names, in first-seen order.

    Names, not codes: a custom policy renumbers its codes, and ``Policy.resolve`` finds a
    category by name under any policy that keeps it."""
    mapping = S_CODES[table]
    return tuple(dict.fromkeys(_NAMES[c] for name in upstream for c in mapping.get(name, ())))
