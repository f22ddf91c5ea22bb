"""Sets users bring as files: the generic golden-set format (JSONL or CSV, any modality) and the
two schemas the OmniGuard authors' evaluation reads (BeaverTails jsonl, VLGuard ``test.json``).

The golden format is described in ``docs/eval.md``; in short, one record per line or row::

    {"id": "a1", "text": "how do I pick a lock?", "label": "unsafe", "categories": ["S2"]}
    {"text": "what is in this photo?", "image": "img/cat.png", "label": "safe"}
    {"text": "tell me a story", "response": "Once upon...", "label": "safe", "direction": "output"}
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ...content import Image, Part, Text
from ...errors import ConfigError
from ...policy import Policy
from ..categories import category_names
from ..items import EvalItem, media_part

__all__ = ["beavertails", "golden", "load_file", "vlguard"]

_UNSAFE = {"unsafe", "harmful", "true", "1", "yes", "flagged"}
_SAFE = {"safe", "unharmful", "harmless", "false", "0", "no", "benign"}
_KINDS = ("image", "audio", "video")


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"no such golden-set file: {path}")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig")
    name = path.name.removesuffix(".gz")
    if name.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(text)))
    if name.endswith(".json"):
        data = json.loads(text)
        if not isinstance(data, list):
            raise ConfigError(f"{path.name}: a .json golden set must hold a list of records")
        return data
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path.name} line {n} is not JSON: {exc.msg}") from None
    return out


def load_file(path: str | Path, *, dataset: str | None = None, image_root: str | Path | None = None) -> list[EvalItem]:
    """Load a user's file, telling its schema from the first record."""
    path = Path(path)
    records = _records(path)
    if not records:
        raise ConfigError(f"{path.name} holds no records")
    first = records[0]
    name = dataset or path.name.split(".")[0]
    if {"prompt", "response", "is_safe"} <= set(first):
        return beavertails(records, dataset=name)
    if {"image", "safe"} <= set(first) and "label" not in first:
        beside = path.parent / "test" if (path.parent / "test").is_dir() else path.parent
        root = Path(image_root) if image_root else beside
        return vlguard(records, image_root=root, dataset=name)
    return golden(records, base=path.parent, dataset=name)


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _UNSAFE:
        return True
    if word in _SAFE:
        return False
    raise ConfigError(f"{where}: label must be safe/unsafe (or harmful/unharmful, true/false, 1/0), got {value!r}")


def _listed(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        sep = "|" if "|" in value else ","
        return [v.strip() for v in value.split(sep) if v.strip()]
    return [str(v) for v in value]


def _media(record: Mapping[str, Any], prefix: str, base: Path, where: str) -> list[Part]:
    """The record's media parts. A local file that is not there is the golden set's mistake,
    refused now: judged, it would count as the model's error."""
    parts: list[Part] = []
    for kind in _KINDS:
        for source in _listed(record.get(prefix + kind)):
            if "://" not in source and not (base / source).is_file():
                raise ConfigError(f"{where}: {prefix + kind} file {source!r} is not there (looked in {base})")
            parts.append(media_part(kind, source if "://" in source else base / source))
    return parts


_DEFAULT = Policy()


def _category_names(tokens: list[str]) -> tuple[str, ...]:
    """Golden categories by name as given; a code (``S11``) is the default policy's code, read
    as its name now, so a custom policy that renumbers or renames its codes cannot change it."""
    out = []
    for token in tokens:
        cat = _DEFAULT.resolve(token)
        out.append(cat.name if cat is not None else token)
    return tuple(dict.fromkeys(out))


def golden(records: Iterable[Mapping[str, Any]], *, base: Path, dataset: str) -> list[EvalItem]:
    items = []
    for n, rec in enumerate(records, start=1):
        where = f"{dataset} record {n}"
        if "label" not in rec:
            raise ConfigError(f"{where} has no 'label' (safe or unsafe)")
        text = rec.get("text", rec.get("prompt")) or ""
        user: tuple[Part, ...] = tuple(([Text(str(text))] if text else []) + _media(rec, "", base, where))
        response = rec.get("response") or ""
        assistant_parts = ([Text(str(response))] if response else []) + _media(rec, "response_", base, where)
        direction = str(rec.get("direction") or ("output" if assistant_parts else "input")).lower()
        if direction in ("output", "response"):
            if not assistant_parts:
                raise ConfigError(f"{where}: direction 'output' needs a response to judge")
            assistant: tuple[Part, ...] | None = tuple(assistant_parts)
        elif direction in ("input", "prompt"):
            assistant = None
        else:
            raise ConfigError(f"{where}: direction must be input or output, got {direction!r}")
        if not user and assistant is None:
            raise ConfigError(f"{where} has nothing to judge: give text, image, audio or video")
        items.append(EvalItem(
            id=f"{dataset}/{rec.get('id') or n}", dataset=str(rec.get("dataset") or dataset),
            unsafe=_label(rec["label"], where), user=user, assistant=assistant,
            categories=_category_names(_listed(rec.get("categories"))), groups=tuple(_listed(rec.get("group"))),
            has_categories="categories" in rec,
        ))
    return items


def beavertails(records: Iterable[Mapping[str, Any]], *, dataset: str = "beavertails") -> list[EvalItem]:
    """BeaverTails rows (``prompt``, ``response``, ``is_safe``, ``category``): the label is on the
    response, as in the authors' loader (``prompt_1`` / ``prompt_2``)."""
    items = []
    for n, rec in enumerate(records, start=1):
        flagged = [k for k, v in (rec.get("category") or {}).items() if v]
        items.append(EvalItem(
            id=f"{dataset}/{n}", dataset=dataset, unsafe=not bool(rec["is_safe"]), user=(Text(rec["prompt"]),),
            assistant=(Text(rec["response"]),), categories=category_names("beavertails", *flagged),
            groups=tuple(flagged),
        ))
    return items


def vlguard(records: Iterable[Mapping[str, Any]], *, image_root: Path, dataset: str = "vlguard") -> list[EvalItem]:
    """VLGuard ``test.json``: the image judged alone (the authors use the image-only template)."""
    items = []
    for n, rec in enumerate(records, start=1):
        path = image_root / rec["image"]
        groups = tuple(g for g in (rec.get("harmful_category"), rec.get("harmful_subcategory")) if g)
        unsafe = not bool(rec["safe"])
        items.append(EvalItem(
            id=f"{dataset}/{rec.get('id') or n}", dataset=dataset, unsafe=unsafe, user=(Image(path, name=path.name),),
            categories=category_names("vlguard", *groups) if unsafe else (), groups=groups,
        ))
    return items
