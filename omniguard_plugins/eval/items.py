"""One labelled evaluation item, whatever set or modality it comes from.

An item is the check the judge makes (the user turn, the assistant turn for a response-level
label) plus its ground truth: ``unsafe`` for the positive class, the policy categories the set's own
categories map to (approximate, see the set's README), and the set's own category names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..content import Audio, Conversation, Image, Part, Text, Video

__all__ = ["Direction", "EvalItem", "media_part", "modality_of", "sample"]

Direction = Literal["input", "output"]
_ORDER = ("text", "image", "audio", "video")


@dataclass(frozen=True)
class EvalItem:
    """A labelled check. ``direction="output"`` means the label is on the assistant turn."""

    id: str
    dataset: str
    unsafe: bool
    user: tuple[Part, ...]
    assistant: tuple[Part, ...] | None = None
    #: the policy categories the label is about, by name (or code): what the set's own
    #: categories map to; empty when unknown or safe
    categories: tuple[str, ...] = ()
    #: the set's own category names (XSTest ``type``, HarmBench ``SemanticCategory`` ...)
    groups: tuple[str, ...] = ()
    #: False for sets that carry no categories at all (reports say so)
    has_categories: bool = True
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> Direction:
        return "output" if self.assistant is not None else "input"

    @property
    def modality(self) -> str:
        return modality_of(self.user, self.assistant)

    @property
    def judged_text(self) -> str:
        """The text of the judged turn (for reports and flipped-item lists)."""
        parts = self.assistant if self.assistant is not None else self.user
        text = " ".join(p.text for p in parts if isinstance(p, Text)).strip()
        media = [f"[{p.kind}: {p.name or 'media'}]" for p in parts if not isinstance(p, Text)]
        return " ".join([text, *media]).strip()

    def conversation(self) -> Conversation:
        """The turns the judge reads for this item."""
        assistant = list(self.assistant) if self.assistant is not None else None
        return Conversation.of(user=list(self.user), assistant=assistant)

    def with_(self, **changes: Any) -> EvalItem:
        return replace(self, **changes)


def modality_of(user: Sequence[Part], assistant: Sequence[Part] | None = None) -> str:
    """``text``, ``image``, ``text+image``, ``text+audio`` ...: the kinds of content in the check."""
    kinds: set[str] = set()
    for part in (*user, *(assistant or ())):
        if isinstance(part, Text):
            if part.text.strip():
                kinds.add("text")
        else:
            kinds.add(part.kind)
    return "+".join(k for k in _ORDER if k in kinds) or "empty"


def media_part(kind: str, path: str | Path) -> Part:
    """An Image/Audio/Video part for a local path or a URL, named for reports."""
    cls: Any = {"image": Image, "audio": Audio, "video": Video}[kind]
    if isinstance(path, str) and "://" in path:
        return cls(path, name=path.rsplit("/", 1)[-1] or path)
    p = Path(path)
    return cls(p, name=p.name)


def sample(items: Sequence[EvalItem], limit: int | None, *, seed: int = 0) -> list[EvalItem]:
    """At most ``limit`` items, label-stratified and deterministic, so a small sample of a
    balanced set still holds both classes and a resumed run picks the same items."""
    if limit is None or limit >= len(items):
        return list(items)
    import random

    rng = random.Random(seed)
    by_label = {True: [i for i in items if i.unsafe], False: [i for i in items if not i.unsafe]}
    for group in by_label.values():
        rng.shuffle(group)
    share = round(limit * len(by_label[True]) / len(items))
    if by_label[True] and by_label[False] and limit >= 2:
        share = min(max(share, 1), limit - 1)
    picked = by_label[True][:share] + by_label[False][: limit - share]
    if len(picked) < limit:  # one class ran short: fill from the other
        rest = by_label[True][share:] + by_label[False][limit - share:]
        picked += rest[: limit - len(picked)]
    order = {item.id: n for n, item in enumerate(items)}
    return sorted(picked, key=lambda i: order[i.id])
