"""The checkpoints' answer format, in one place: what they write, how it is read, where it ends.

The OmniGuard checkpoints answer in three fields (``../shared/omniguard-format.md``)::

    - Safety Assessment: unsafe
    - Categories: S1, S10
    - Assessment: <critique>

The label comes first, so a verdict is complete once the Categories line ends. Everything that
depends on that shape (the parser, the forced label prefix, the early stop in-process and over
HTTP, the test doubles that write answers, Llama Guard's short form) takes it from here, so
they cannot drift apart. The ``*_NAMES`` patterns are the lenient spellings the parser accepts
for each field (case, bullets, bold and synonyms vary between outputs); the canonical names
are what the checkpoints were trained to write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .verdict import Verdict

__all__ = [
    "CATEGORIES_FIELD",
    "CATEGORIES_PREFIX",
    "CATEGORIES_RE",
    "CRITIQUE_FIELD",
    "CRITIQUE_PREFIX",
    "CRITIQUE_RE",
    "LABEL_FIELD",
    "LABEL_PREFIX",
    "LABEL_RE",
    "NO_CATEGORIES",
    "SHORT_LABEL_RE",
    "VERDICT_STOP",
    "short_form",
    "stops_at_verdict",
    "truncate_to_verdict",
    "verdict_complete",
    "write_answer",
]

#: the canonical field names, in the order the checkpoints write them
LABEL_FIELD = "Safety Assessment"
CATEGORIES_FIELD = "Categories"
CRITIQUE_FIELD = "Assessment"
_BULLET = "- "

#: what the judge forces the model's answer to start with
LABEL_PREFIX = f"{_BULLET}{LABEL_FIELD}:"
CATEGORIES_PREFIX = f"\n{_BULLET}{CATEGORIES_FIELD}:"
CRITIQUE_PREFIX = f"\n{_BULLET}{CRITIQUE_FIELD}:"
#: what a safe answer lists as its categories
NO_CATEGORIES = "None"

#: stop sequences for verdict mode over HTTP: generation ends where the critique would begin
#: (with or without the space after the bullet, which the fine-tunes do not pin down)
VERDICT_STOP: tuple[str, ...] = (f"\n{_BULLET}{CRITIQUE_FIELD}", f"\n{_BULLET.strip()}{CRITIQUE_FIELD}")

# Lenient spellings of each field. A label line named like the critique ("- Assessment: this
# looks safe") still matches LABEL_NAMES; its word is then neither safe nor unsafe, so the
# parser calls the output unparseable rather than guessing.
LABEL_NAMES = r"(?:safety\s+)?(?:assessment|rating|label|safety)"
CATEGORIES_NAMES = r"(?:violated\s+)?categor(?:y|ies)"
CRITIQUE_NAMES = r"(?:assessment|critique|rationale|explanation|reason)"

_FIELD = r"^[\s\-\*•>#]*(?:\*\*)?\s*{names}\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?"
LABEL_RE = re.compile(_FIELD.format(names=LABEL_NAMES) + r"\s*([A-Za-z]+)", re.I | re.M)
CATEGORIES_RE = re.compile(_FIELD.format(names=CATEGORIES_NAMES) + r"(.*)$", re.I | re.M)
CRITIQUE_RE = re.compile(_FIELD.format(names=CRITIQUE_NAMES) + r"(.*)", re.I | re.M | re.S)
#: Llama Guard's short form (see :func:`short_form`): a line that is only the label
SHORT_LABEL_RE = re.compile(r"^\s*(safe|unsafe)\s*$", re.I | re.M)


def write_answer(safe: bool, categories: Iterable[str] = (), critique: str | None = None) -> str:
    """The answer as a checkpoint writes it; without a critique, as verdict mode leaves it.

    ``categories`` are codes or names (``"S1"``); none is written as ``None``.
    """
    codes = list(categories)
    for code in codes:
        if not isinstance(code, str) or not code.strip() or any(ch in code for ch in ",\n\r"):
            raise ConfigError(f"a category in an answer must be one line without commas, got {code!r}")
    if critique is not None and not critique.strip():
        raise ConfigError("a critique must have text; pass critique=None to write a verdict only")
    label = "safe" if safe else "unsafe"
    text = f"{LABEL_PREFIX} {label}{CATEGORIES_PREFIX} {', '.join(codes) if codes else NO_CATEGORIES}"
    return text if critique is None else f"{text}{CRITIQUE_PREFIX} {critique}"


def verdict_complete(text: str) -> bool:
    """Whether the Categories line has ended (a newline follows it): label and categories are
    final, so verdict mode may stop generating. The same pattern the parser reads it with."""
    m = CATEGORIES_RE.search(text)
    return m is not None and text.startswith("\n", m.end())


def truncate_to_verdict(text: str) -> str:
    """Cut a full output after its Categories line (what ``verdict`` mode generates)."""
    m = CATEGORIES_RE.search(text)
    if m:
        return text[: m.end()].rstrip()
    return text


def stops_at_verdict(stops: Iterable[str]) -> bool:
    """Whether a client's stop sequences end generation where the critique begins: a raw
    completion asking for that is a verdict-mode request (the openai backend sends these)."""
    return any(s.startswith(VERDICT_STOP) for s in stops)


def short_form(verdict: Verdict) -> str:
    """Llama Guard 3's answer (``safe``, or ``unsafe`` then a line of codes), which NeMo's
    ``is_content_safe`` parser and Llama Guard clients read. A failed check says ``unsafe``."""
    if verdict.safe:
        return "safe"
    return "unsafe\n" + ",".join(verdict.category_codes) if verdict.category_codes else "unsafe"
