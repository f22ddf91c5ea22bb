"""The Verdict and a lenient parser of what the checkpoints write.

The answer's fields and their lenient spellings live in :mod:`.answer_format`; case, bullets,
spelling of "none" and missing fields vary between outputs. The parser accepts all of that and
also Llama-Guard-style ``safe`` / ``unsafe\\nS1,S9``. What it cannot read is never safe: it
becomes ``safe=False, error="unparseable"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .answer_format import CATEGORIES_RE, CRITIQUE_RE, LABEL_PREFIX, LABEL_RE, SHORT_LABEL_RE, truncate_to_verdict
from .policy import Category, Policy, categories_from

__all__ = ["LABEL_PREFIX", "Evidence", "EvidenceKind", "Mode", "Verdict", "parse_output", "truncate_to_verdict"]

Mode = Literal["verdict", "critique", "score"]

EvidenceKind = Literal["text", "image", "audio", "video"]


@dataclass(frozen=True)
class Evidence:
    """Where in the judged turn a verdict found the harm.

    ``part`` is the index of the part in the judged turn, counting every part (text included)
    in the order given; ``chars`` a ``(start, end)`` span in that text part; ``seconds`` a
    ``(start, end)`` span in that audio or video part. ``joint`` names the other parts this one
    is unsafe only together with (an image harmless alone but unsafe with its caption).
    ``capped``: narrowing this item stopped early (the cap on extra checks, or a failed check),
    so it may be wider than the configured resolution.
    """

    part: int
    kind: EvidenceKind
    categories: tuple[str, ...] = ()
    chars: tuple[int, int] | None = None
    seconds: tuple[float, float] | None = None
    joint: tuple[int, ...] = ()
    capped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; ``"capped": true`` appears only on an item whose narrowing stopped early."""
        data = {"part": self.part, "kind": self.kind, "categories": list(self.categories),
                "chars": list(self.chars) if self.chars is not None else None,
                "seconds": list(self.seconds) if self.seconds is not None else None,
                "joint": list(self.joint)}
        if self.capped:
            data["capped"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        chars = data.get("chars")
        seconds = data.get("seconds")
        return cls(part=int(data["part"]), kind=data["kind"], categories=tuple(data.get("categories") or ()),
                   chars=(int(chars[0]), int(chars[1])) if chars else None,
                   seconds=(float(seconds[0]), float(seconds[1])) if seconds else None,
                   joint=tuple(int(j) for j in data.get("joint") or ()), capped=bool(data.get("capped", False)))


_NONE_WORDS = {"", "none", "n/a", "na", "null", "nil", "no", "-", "no category", "no categories", "[]", "safe"}


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one check.

    ``safe`` is the decision a rail acts on. Under ``on_error="block"`` a failed check is
    ``safe=False`` with ``error`` set; under ``"allow"`` it is ``safe=True`` with ``error`` set.
    """

    safe: bool
    categories: tuple[Category, ...] = ()
    critique: str | None = None
    score: float | None = None
    raw: str = ""
    error: str | None = None
    latency_ms: float = 0.0
    direction: str = "input"
    mode: str = "verdict"
    cached: bool = False
    #: extra facts: e.g. which audio window was unsafe ("window", "window_s")
    details: Mapping[str, Any] = field(default_factory=dict)
    #: where the harm is (filled when the check asked to localize an unsafe verdict)
    evidence: tuple[Evidence, ...] = ()

    @property
    def unsafe(self) -> bool:
        return not self.safe

    @property
    def label(self) -> str:
        if self.error and self.raw == "":
            return "error"
        return "safe" if self.safe else "unsafe"

    @property
    def category_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.categories)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    def with_(self, **changes: Any) -> Verdict:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = [{"code": c.code, "name": c.name} for c in self.categories]
        data["details"] = dict(self.details)
        data["evidence"] = [e.to_json() for e in self.evidence]
        data["label"] = self.label
        return data

    def summary(self) -> str:
        if self.error:
            head = f"error ({self.error}) -> {'allowed' if self.safe else 'blocked'}"
        else:
            head = "safe" if self.safe else "unsafe"
        if self.categories:
            head += ": " + ", ".join(str(c) for c in self.categories)
        return head


def parse_output(raw: str, policy: Policy, *, score: float | None = None) -> Verdict:
    """Parse raw model output into a Verdict. Never raises; never calls garbage safe."""
    if not isinstance(raw, str):
        return Verdict(safe=False, raw=repr(raw), error="unparseable")
    label = _find_label(raw)
    if label is None:
        return Verdict(safe=False, raw=raw, error="unparseable", score=score)

    cats_text: str | None = None
    m = CATEGORIES_RE.search(raw)
    if m:
        cats_text = m.group(1)
    elif (bare := SHORT_LABEL_RE.search(raw)) is not None:
        # Llama Guard style: the line after the label lists the codes
        rest = raw[bare.end():].strip().splitlines()
        cats_text = rest[0] if rest else ""

    categories: tuple[Category, ...] = ()
    if cats_text is not None and cats_text.strip().lower() not in _NONE_WORDS:
        categories = categories_from(policy, re.split(r"[,;/|]|\band\b", cats_text))

    critique = None
    c = CRITIQUE_RE.search(raw)
    if c and (label_line_end := _label_span_end(raw)) is not None and c.start() >= label_line_end:
        critique = c.group(1).strip() or None

    return Verdict(safe=(label == "safe"), categories=categories, critique=critique, score=score, raw=raw)


def _find_label(raw: str) -> str | None:
    m = LABEL_RE.search(raw)
    if m:
        word = m.group(1).lower()
        if word in ("safe", "unsafe"):
            return word
        return None
    bare = SHORT_LABEL_RE.search(raw)
    if bare:
        return bare.group(1).lower()
    return None


def _label_span_end(raw: str) -> int | None:
    m = LABEL_RE.search(raw) or SHORT_LABEL_RE.search(raw)
    return m.end() if m else None
