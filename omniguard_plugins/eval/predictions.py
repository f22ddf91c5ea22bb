"""One judged item: the item's truth and the verdict, as a line of ``predictions.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..verdict import Verdict
from .items import EvalItem

__all__ = ["Prediction", "read_predictions"]

_RAW_CHARS = 400


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

    @classmethod
    def of(cls, item: EvalItem, verdict: Verdict) -> Prediction:
        return cls(
            id=item.id, dataset=item.dataset, modality=item.modality, direction=item.direction, unsafe=item.unsafe,
            flagged=not verdict.safe, categories=item.categories, groups=item.groups,
            has_categories=item.has_categories, predicted_categories=verdict.category_names, score=verdict.score,
            error=verdict.error, latency_ms=round(verdict.latency_ms, 3), text=item.judged_text[:300],
            raw=verdict.raw[:_RAW_CHARS], meta={k: v for k, v in item.meta.items() if _jsonable(v)},
        )

    @property
    def error_kind(self) -> str | None:
        return self.error.split(":", 1)[0] if self.error else None

    @property
    def decision(self) -> bool:
        """What the metrics count as the prediction: a failed check is always wrong."""
        return (not self.unsafe) if self.error else self.flagged

    @property
    def correct(self) -> bool:
        return self.decision == self.unsafe

    def counted_score(self) -> float | None:
        """The score the curves use; a failed check gets the worst score for its label."""
        if self.error:
            return 0.0 if self.unsafe else 1.0
        return self.score

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("categories", "groups", "predicted_categories"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None))) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value))


def read_predictions(path: str | Path) -> list[Prediction]:
    """The predictions in a run's ``predictions.jsonl`` (a run folder or the file); a torn last
    line (a run stopped mid-write) is ignored, so the item is judged again on resume."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(Prediction.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue
    return out


def write_lines(path: Path, predictions: Iterable[Prediction]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for p in predictions:
            f.write(p.to_json() + "\n")
        f.flush()
