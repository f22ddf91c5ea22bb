"""Where an unsafe verdict's harm is: more rounds of the check flow, each one batch.

Why rounds of the flow and not a loop of checks: every round goes out as ONE list of requests
through the runner (cache, micro-batcher, one deadline), so many localizations share batches
with everything else and a sync and an async caller get the same thing.

How, for one unsafe verdict on a turn (the judged turn: the last user turn for an input check,
the last assistant turn for an output check; earlier turns stay whole, as context):

1. Units: each text part is one unit of sentences, each image one unit, each audio or video
   part one unit per ``audio_window_s`` (a video with its soundtrack, cut at the same times).
   With more than one unit, each is judged alone (one round). A lone unit is the turn itself.
2. Bisection: an unsafe unit longer than the resolution (``sentences`` / ``seconds``) is cut in
   two and both halves are judged (one round for all units at once); unsafe halves are cut
   again. When neither half is unsafe alone, the unit is as small as it gets (the harm spans
   the cut). About 2 log2(n) checks per unsafe span.
3. Joint: when no unit is unsafe alone, the turn without each part is judged (one round); the
   parts without which it turns safe are judged together (one more); that smallest
   combination is the evidence, each item naming the others in ``joint``.

``max_checks`` caps the extra checks of one verdict: a round that would pass it is not sent,
and the evidence it would have narrowed is kept as it is, marked ``capped``. A request that
fails stops localizing the same way (the verdict itself stands). ``Verdict.details["localize"]``
counts the checks and rounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .answer_format import LABEL_PREFIX
from .backends.base import GenerationRequest
from .content import Conversation, MediaPart, Part, Text, Turn
from .errors import ConfigError
from .media import DecodedAudio, DecodedMedia, DecodedVideo
from .prompt import render
from .verdict import Evidence, Verdict

if TYPE_CHECKING:
    from ._checkflow import CheckSpec, Flow, FlowSettings

__all__ = ["Localize", "localize_flow", "sentence_spans"]


@dataclass(frozen=True)
class Localize:
    """How far and how long to narrow: the resolution and the cap on extra checks."""

    #: the smallest text span reported, in sentences
    sentences: int = 1
    #: the smallest audio or video span reported, in seconds
    seconds: float = 1.0
    #: extra checks one verdict may spend; a round that would pass it is not sent
    max_checks: int = 48

    def __post_init__(self) -> None:
        if self.sentences < 1:
            raise ConfigError(f"localize_sentences must be at least 1, got {self.sentences}")
        if self.seconds <= 0:
            raise ConfigError(f"localize_seconds must be positive, got {self.seconds}")
        if self.max_checks < 1:
            raise ConfigError(f"localize_max_checks must be at least 1, got {self.max_checks}")


_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])[\"'\u201d\u2019)\]]*\s+|\n\s*")
#: a "sentence" longer than this (a transcript without punctuation) is cut at spaces into pieces
#: about this long, so text evidence stays sentence-sized
_MAX_SENTENCE_CHARS = 300


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence (or line) of ``text``, trimmed of surrounding space;
    over-long ones cut at spaces into pieces of at most about ``_MAX_SENTENCE_CHARS``."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in (*_SENTENCE_END.finditer(text), None):
        end = m.start() if m is not None else len(text)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.extend(_pieces(text, start + lead, start + len(piece.rstrip())))
        if m is not None:
            start = m.end()
    return spans


def _pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while end - start > _MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start + 1, start + _MAX_SENTENCE_CHARS)
        if cut <= start:
            cut = start + _MAX_SENTENCE_CHARS
        out.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    out.append((start, end))
    return out


@dataclass(frozen=True)
class _Unit:
    """A piece of one part of the judged turn: sentences ``[lo, hi)`` of a text part, a time
    span of an audio or video part, or a whole image."""

    part: int
    lo: float = 0.0
    hi: float = 0.0

    def halves(self, kind: str) -> tuple[_Unit, _Unit]:
        if kind == "text":
            mid: float = int(self.lo + (self.hi - self.lo) // 2)
        else:
            mid = (self.lo + self.hi) / 2
        return _Unit(self.part, self.lo, mid), _Unit(self.part, mid, self.hi)


@dataclass
class _Turn:
    """The judged turn taken apart, and how to put any selection of it back together."""

    spec: CheckSpec
    settings: FlowSettings
    context: tuple[Turn, ...]
    role: str
    parts: tuple[Part, ...]
    sentences: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    decoded: dict[int, list[DecodedMedia]] = field(default_factory=dict)
    context_media: tuple[DecodedMedia, ...] = ()

    def kind(self, part: int) -> str:
        p = self.parts[part]
        return "text" if isinstance(p, Text) else p.kind

    def duration(self, part: int) -> float:
        return max((m.duration_s for m in self.decoded[part] if isinstance(m, (DecodedAudio, DecodedVideo))),
                   default=0.0)

    def size(self, unit: _Unit) -> float:
        return unit.hi - unit.lo

    def splittable(self, unit: _Unit, res: Localize) -> bool:
        kind = self.kind(unit.part)
        if kind == "text":
            return self.size(unit) > res.sentences
        return kind in ("audio", "video") and self.size(unit) > res.seconds

    def request(self, units: Sequence[_Unit]) -> GenerationRequest:
        """One check of the turn holding only ``units`` (in part order), context kept whole."""
        chosen: dict[int, list[_Unit]] = {}
        for u in sorted(units, key=lambda u: (u.part, u.lo)):
            chosen.setdefault(u.part, []).append(u)
        parts: list[Part] = []
        media: list[DecodedMedia] = list(self.context_media)
        for index, pieces in sorted(chosen.items()):
            part = self.parts[index]
            if isinstance(part, Text):
                spans = self.sentences[index]
                parts.extend(Text(part.text[spans[int(u.lo)][0] : spans[int(u.hi) - 1][1]]) for u in pieces)
                continue
            parts.append(part)
            for u in pieces:
                media.extend(_cut(m, u) if part.kind in ("audio", "video") else m for m in self.decoded[index])
        turn = Turn(self.role, tuple(parts))  # type: ignore[arg-type]
        rendered = render(Conversation((*self.context, turn)), self.spec.policy, self.spec.direction,
                          max_text_chars=self.settings.max_text_chars)
        return GenerationRequest(prompt=rendered.text, media=tuple(media), mode=self.spec.mode,
                                 max_new_tokens=self.settings.max_new_tokens, prefix=LABEL_PREFIX,
                                 shared_prefix_chars=rendered.shared_prefix_chars)

    def evidence(self, unit: _Unit, categories: tuple[str, ...], capped: bool,
                 joint: tuple[int, ...] = ()) -> Evidence:
        kind = self.kind(unit.part)
        chars = seconds = None
        if kind == "text":
            spans = self.sentences[unit.part]
            chars = (spans[int(unit.lo)][0], spans[int(unit.hi) - 1][1])
        elif kind in ("audio", "video"):
            seconds = (round(unit.lo, 3), round(unit.hi, 3))
        return Evidence(part=unit.part, kind=kind, categories=categories, chars=chars,  # type: ignore[arg-type]
                        seconds=seconds, joint=joint, capped=capped)


def _cut(m: DecodedMedia, unit: _Unit) -> DecodedMedia:
    return m.span(unit.lo, unit.hi) if isinstance(m, (DecodedAudio, DecodedVideo)) else m


def _split(spec: CheckSpec, settings: FlowSettings) -> _Turn:
    from ._checkflow import decode_labelled

    role = "user" if spec.direction == "input" else "assistant"
    turns = spec.conversation.turns
    last = max(i for i, t in enumerate(turns) if t.role == role)
    context = tuple(turns[:last])
    judged = turns[last]
    media_parts: list[MediaPart] = [m for t in context for m in t.media]
    turn = _Turn(spec, settings, context, role, judged.parts,
                 context_media=decode_labelled(media_parts, settings))
    for i, part in enumerate(judged.parts):
        if isinstance(part, Text):
            turn.sentences[i] = sentence_spans(part.text)
        else:
            turn.decoded[i] = list(decode_labelled([part], settings))
    return turn


def _first_units(turn: _Turn, window_s: float) -> list[_Unit]:
    units: list[_Unit] = []
    for i in range(len(turn.parts)):
        kind = turn.kind(i)
        if kind == "text":
            if turn.sentences[i]:
                units.append(_Unit(i, 0, len(turn.sentences[i])))
        elif kind == "image":
            units.append(_Unit(i))
        else:
            duration = turn.duration(i)
            count = max(1, math.ceil(duration / window_s - 1e-6))
            units.extend(_Unit(i, k * duration / count, (k + 1) * duration / count) for k in range(count))
    return units


@dataclass
class _Budget:
    left: int
    checks: int = 0
    rounds: int = 0
    capped: bool = False
    error: str | None = None


def localize_flow(spec: CheckSpec, settings: FlowSettings, verdict: Verdict) -> Flow:
    """Evidence for an unsafe ``verdict`` of ``spec``: the verdict with ``evidence`` filled."""
    res: Localize = settings.localize
    budget = _Budget(res.max_checks)
    turn = _split(spec, settings)
    units = _first_units(turn, settings.limits.audio_window_s)
    whole = tuple(verdict.category_codes)

    def judge(selections: list[list[_Unit]]) -> Flow:
        """One round: the verdict of each selection, or None when the round was not sent."""
        if budget.error or len(selections) > budget.left:
            budget.capped = budget.capped or not budget.error
            return None
        step = yield [turn.request(s) for s in selections]
        budget.left -= len(selections)
        budget.checks += len(selections)
        budget.rounds += 1
        from ._checkflow import _parse

        out: list[Verdict] = []
        for result in step.results:
            try:
                out.append(_parse(result, spec, settings.threshold))
            except Exception as exc:  # noqa: BLE001 - a failed probe stops narrowing; the verdict stands
                budget.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                return None
        return out

    found: list[tuple[_Unit, tuple[str, ...], bool]] = []  # (unit, categories, capped)
    if len(units) == 1:
        frontier = [(units[0], whole)]
    elif units:
        verdicts = yield from judge([[u] for u in units])
        if verdicts is None:
            return _done(verdict, turn, [], budget, whole_turn=units, categories=whole, joint=False)
        frontier = [(u, v.category_codes or whole) for u, v in zip(units, verdicts) if _unsafe(v)]
        if not frontier:
            return (yield from _joint(turn, units, verdict, budget, judge, whole))
    else:
        frontier = []
    while frontier:
        leaves = [(u, c) for u, c in frontier if not turn.splittable(u, res)]
        found.extend((u, c, False) for u, c in leaves)
        todo = [(u, c) for u, c in frontier if turn.splittable(u, res)]
        if not todo:
            break
        halves = [h for u, _ in todo for h in u.halves(turn.kind(u.part))]
        verdicts = yield from judge([[h] for h in halves])
        if verdicts is None:
            found.extend((u, c, True) for u, c in todo)
            break
        frontier = []
        for k, (u, c) in enumerate(todo):
            pair = [(h, v) for h, v in zip(halves[2 * k : 2 * k + 2], verdicts[2 * k : 2 * k + 2]) if _unsafe(v)]
            if pair:
                frontier.extend((h, v.category_codes or c) for h, v in pair)
            else:
                found.append((u, c, False))  # the harm spans the cut: this unit is the smallest
    items = [turn.evidence(u, c, capped) for u, c, capped in _merge(found)]
    return _done(verdict, turn, items, budget)


def _joint(turn: _Turn, units: list[_Unit], verdict: Verdict, budget: _Budget, judge: Any,
           whole: tuple[str, ...]) -> Flow:
    """No unit is unsafe alone: the smallest combination of parts that is."""
    parts = sorted({u.part for u in units})
    by_part = {p: [u for u in units if u.part == p] for p in parts}
    needed = parts
    if len(parts) > 1:
        without = yield from judge([[u for q in parts if q != p for u in by_part[q]] for p in parts])
        if without is not None:
            needed = [p for p, v in zip(parts, without) if not _unsafe(v)] or parts
            if len(needed) < len(parts) - 1:  # one part less was judged already: unsafe
                alone = yield from judge([[u for p in needed for u in by_part[p]]])
                if alone is None or not _unsafe(alone[0]):
                    needed = parts
    return _done(verdict, turn, [], budget, whole_turn=[u for p in needed for u in by_part[p]], categories=whole,
                 joint=True)


def _done(verdict: Verdict, turn: _Turn, items: list[Evidence], budget: _Budget, *,
          whole_turn: Sequence[_Unit] = (), categories: tuple[str, ...] = (), joint: bool = False) -> Verdict:
    """The verdict with its evidence: ``items``, or each unit of ``whole_turn`` (merged per part)
    when the harm could not be narrowed below them (``joint``: they are unsafe only together)."""
    if whole_turn:
        parts = sorted({u.part for u in whole_turn})
        merged = _merge([(u, categories, budget.capped or bool(budget.error)) for u in whole_turn])
        items = [turn.evidence(u, c, capped, joint=tuple(p for p in parts if p != u.part) if joint else ())
                 for u, c, capped in merged]
    details: dict[str, Any] = {"checks": budget.checks, "rounds": budget.rounds, "capped": budget.capped}
    if budget.error:
        details["error"] = budget.error
    return verdict.with_(evidence=tuple(items), details={**verdict.details, "localize": details})


def _merge(found: list[tuple[_Unit, tuple[str, ...], bool]]) -> list[tuple[_Unit, tuple[str, ...], bool]]:
    """Touching or overlapping units of one part as one, categories and caps joined."""
    out: list[tuple[_Unit, tuple[str, ...], bool]] = []
    for unit, cats, capped in sorted(found, key=lambda f: (f[0].part, f[0].lo)):
        if out and out[-1][0].part == unit.part and unit.lo <= out[-1][0].hi + 1e-9 and unit.hi > unit.lo:
            prev, pcats, pcap = out[-1]
            out[-1] = (_Unit(unit.part, prev.lo, max(prev.hi, unit.hi)), tuple(dict.fromkeys(pcats + cats)),
                       pcap or capped)
        else:
            out.append((unit, cats, capped))
    return out


def _unsafe(v: Verdict) -> bool:
    return not v.safe and not v.error
