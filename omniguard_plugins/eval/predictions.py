"""One judged item: the item's truth and the verdict, as a line of ``predictions.jsonl``.

A line holds the item (id, set, modality, direction, label, its categories, the judged text)
and, under ``"verdict"``, the verdict exactly as every door sends it out
(``doors.summarize(verdict, stage).to_json()``), plus how it was judged (``"batch"``: the
``check_many`` call's size and wall time, so batch waits stay apart from per-item latency).
Lines written before that shape (flat ``flagged``, ``predicted_categories``, ``score`` ...) are
still read, so an old run folder resumes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..doors import VerdictSummary, summarize
from ..verdict import Verdict
from .items import EvalItem

__all__ = ["Prediction", "outside_model", "read_predictions", "rewrite_predictions"]

_RAW_CHARS = 400
_TEXT_CHARS = 300

#: error kinds that say nothing about the model: the check never reached it, or was cut off
_OUTSIDE_KINDS = {"overloaded", "timeout", "model_load"}
#: backend errors that are the environment's (an interrupt, a server down or refusing, a
#: closed judge), not the model's answer to this item
_OUTSIDE_BACKEND = re.compile(
    r"KeyboardInterrupt|CancelledError|SystemExit|no endpoint answered|HTTP (429|50[0-4])|connect|refused|"
    r"judge (is )?closed|closed before|batch worker|running one batch for over|unavailable", re.I)


def outside_model(error: str | None) -> bool:
    """Whether a failed check failed for a reason outside the model (an interrupt, overload, a
    backend that was down): such rows are judged again when a run is resumed."""
    if not error:
        return False
    kind = error.split(":", 1)[0].strip()
    return kind in _OUTSIDE_KINDS or (kind == "backend" and bool(_OUTSIDE_BACKEND.search(error)))


@dataclass(frozen=True)
class Prediction:
    id: str
    dataset: str
    modality: str
    direction: str
    unsafe: bool
    #: the verdict said unsafe (``not verdict.safe``; under on_error=block an error says unsafe too)
    flagged: bool
    categories: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    has_categories: bool = True
    predicted_categories: tuple[str, ...] = ()
    score: float | None = None
    error: str | None = None
    latency_ms: float = 0.0
    text: str = ""
    raw: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    critique: str | None = None
    #: the verdict as sent out (``VerdictSummary.to_json()``); rebuilt from the flat fields for old rows
    verdict: dict[str, Any] = field(default_factory=dict)
    #: the check_many call this item was judged in: {"size": n, "wall_ms": t}
    batch: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, item: EvalItem, verdict: Verdict, *, batch: Mapping[str, Any] | None = None) -> Prediction:
        summary = summarize(verdict, item.direction)
        return cls(
            id=item.id, dataset=item.dataset, modality=item.modality, direction=item.direction, unsafe=item.unsafe,
            flagged=not verdict.safe, categories=item.categories, groups=item.groups,
            has_categories=item.has_categories, predicted_categories=verdict.category_names, score=verdict.score,
            error=verdict.error, latency_ms=round(verdict.latency_ms, 3), text=item.judged_text[:_TEXT_CHARS],
            raw=verdict.raw[:_RAW_CHARS], meta={k: v for k, v in item.meta.items() if _jsonable(v)},
            critique=verdict.critique, verdict=summary.to_json(), batch=dict(batch or {}),
        )

    @property
    def error_kind(self) -> str | None:
        return self.error.split(":", 1)[0] if self.error else None

    @property
    def outside_model(self) -> bool:
        return outside_model(self.error)

    @property
    def decision(self) -> bool:
        """What the metrics count as the prediction: a failed check is always wrong."""
        return (not self.unsafe) if self.error else self.flagged

    @property
    def correct(self) -> bool:
        return self.decision == self.unsafe

    @property
    def batch_size(self) -> int | None:
        size = self.batch.get("size")
        return int(size) if size is not None else None

    def counted_score(self) -> float | None:
        """The score the curves use; a failed check gets the worst score for its label."""
        if self.error:
            return 0.0 if self.unsafe else 1.0
        return self.score

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dataset": self.dataset, "modality": self.modality, "direction": self.direction,
                "unsafe": self.unsafe, "categories": list(self.categories), "groups": list(self.groups),
                "has_categories": self.has_categories, "text": self.text, "meta": self.meta,
                "verdict": self.verdict or self._summary().to_json(), "raw": self.raw, "batch": self.batch}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def _summary(self) -> VerdictSummary:
        label = "error" if self.error and not self.raw else ("unsafe" if self.flagged else "safe")
        return VerdictSummary(label=label, safe=not self.flagged, category_names=self.predicted_categories,
                              score=self.score, error=self.error, critique=self.critique,
                              stage="output" if self.direction == "output" else "input", direction=self.direction,
                              latency_ms=self.latency_ms)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """A line of either shape: ``"verdict"`` as the doors send it, or the older flat fields."""
        values = dict(data)
        summary = values.get("verdict")
        if isinstance(summary, Mapping):
            v = VerdictSummary.from_json(summary)
            values.update(flagged=not v.safe, predicted_categories=v.category_names, score=v.score, error=v.error,
                          latency_ms=v.latency_ms, critique=v.critique, verdict=dict(summary))
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        for key in ("categories", "groups", "predicted_categories"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None))) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value))


def read_predictions(path: str | Path) -> list[Prediction]:
    """The predictions in a run's ``predictions.jsonl`` (a run folder or the file); a torn last
    line (a run stopped mid-write) is ignored, so the item is judged again on resume. An item
    judged twice keeps its last line."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.jsonl"
    if not path.exists():
        return []
    out: dict[str, Prediction] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            p = Prediction.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError, KeyError, ValueError):
            continue
        out.pop(p.id, None)
        out[p.id] = p
    return list(out.values())


def write_lines(path: Path, predictions: Iterable[Prediction]) -> None:
    """Append a batch in one write, so a stop between batches never leaves half of one."""
    text = "".join(p.to_json() + "\n" for p in predictions)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()


def rewrite_predictions(path: Path, predictions: Iterable[Prediction]) -> None:
    """Replace the file in one step (write a sibling, then rename), so an interrupt leaves
    either the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(p.to_json() + "\n" for p in predictions), encoding="utf-8")
    os.replace(tmp, path)
