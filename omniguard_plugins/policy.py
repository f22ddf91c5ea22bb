"""Safety policies: the categories the judge checks against.

The checkpoints were trained on Llama Guard 3's first twelve categories (S1-S12), so the
default policy is those, verbatim. Custom policies add, drop or rename categories; codes are
always ``S1..Sn`` in the order the prompt lists them, since that is what the model answers with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["DEFAULT_CATEGORIES", "Category", "Policy"]


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    description: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.name}"


_DEFAULT = [
    ("Violent Crimes", "Responses that enable, encourage, or endorse the commission of violent crimes."),
    ("Non-Violent Crimes", "Responses that enable, encourage, or endorse the commission of non-violent crimes."),
    ("Sex-Related Crimes", "Responses that enable, encourage, or endorse the commission of sex-related crimes."),
    (
        "Child Sexual Exploitation",
        "Responses that contain, describe, enable, encourage, or endorse the sexual abuse of children.",
    ),
    ("Defamation", "Responses that are both verifiably false and likely to injure a living person's reputation."),
    ("Specialized Advice", "Responses that contain specialized financial, medical, or legal advice."),
    (
        "Privacy",
        "Responses that contain sensitive, nonpublic personal information that could undermine someone's "
        "physical, digital, or financial security.",
    ),
    ("Intellectual Property", "Responses that may violate the intellectual property rights of any third party."),
    (
        "Indiscriminate Weapons",
        "Responses that enable, encourage, or endorse the creation of indiscriminate weapons.",
    ),
    ("Hate", "Responses that demean or dehumanize people on the basis of their sensitive, personal characteristics."),
    ("Suicide & Self-Harm", "Responses that enable, encourage, or endorse acts of intentional self-harm."),
    ("Sexual Content", "Responses that contain erotica."),
]

DEFAULT_CATEGORIES: tuple[Category, ...] = tuple(
    Category(f"S{i}", name, desc) for i, (name, desc) in enumerate(_DEFAULT, start=1)
)

_CODE_RE = re.compile(r"^s(\d+)$", re.IGNORECASE)

#: bounds on a custom policy: its text goes into every prompt, and a policy can arrive with a
#: request (``/v1/guard``), so it is capped like the request's own text
MAX_CATEGORIES = 64
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 4000


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


@dataclass(frozen=True)
class Policy:
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES

    def __post_init__(self) -> None:
        cats = tuple(self.categories)
        if not cats:
            raise ConfigError("a policy needs at least one category")
        if len(cats) > MAX_CATEGORIES:
            raise ConfigError(f"a policy may have at most {MAX_CATEGORIES} categories, got {len(cats)}")
        for c in cats:
            if not isinstance(c, Category):
                raise ConfigError(f"policy categories must be Category objects, got {type(c).__name__}")
            _check_text("category name", c.name, MAX_NAME_CHARS, required=True)
            _check_text(f"description of {c.name[:40]!r}", c.description, MAX_DESCRIPTION_CHARS)
        # codes follow position: S1..Sn is what the model reads and answers with
        renumbered = tuple(Category(f"S{i}", c.name, c.description) for i, c in enumerate(cats, start=1))
        names = [_norm(c.name) for c in renumbered]
        if len(set(names)) != len(names):
            raise ConfigError("policy category names must be unique")
        object.__setattr__(self, "categories", renumbered)

    @classmethod
    def default(cls) -> Policy:
        return cls()

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self):
        return iter(self.categories)

    def render(self) -> str:
        """The ``{policies}`` block of the prompt: ``S{i}: {name}\\n{description}`` per category.
        Rendered once per policy: every check of every rail reuses it."""
        cached = self.__dict__.get("_rendered")
        if cached is None:
            cached = "\n\n".join(f"{c.code}: {c.name}\n{c.description}".rstrip() for c in self.categories)
            object.__setattr__(self, "_rendered", cached)
        return cached

    def resolve(self, token: str) -> Category | None:
        """Map what the model wrote (``S1``, ``s1``, ``S1: Violent Crimes``, ``violent crimes``)
        to a Category of this policy, or None."""
        token = token.strip().strip(".;:'\"`*[]()")
        if not token:
            return None
        head = re.split(r"[\s:\-–]+", token, maxsplit=1)[0]
        m = _CODE_RE.match(head)
        if m:
            idx = int(m.group(1))
            if 1 <= idx <= len(self.categories):
                return self.categories[idx - 1]
            return None
        wanted = _norm(token)
        for c in self.categories:
            if _norm(c.name) == wanted:
                return c
        return None

    def by_code(self, code: str) -> Category:
        cat = self.resolve(code)
        if cat is None:
            raise KeyError(code)
        return cat

    # -- building custom policies -------------------------------------------------------

    def drop(self, *names_or_codes: str) -> Policy:
        gone = {self.by_code(n) for n in names_or_codes}
        return Policy(tuple(c for c in self.categories if c not in gone))

    def rename(self, mapping: Mapping[str, str]) -> Policy:
        new = {self.by_code(k): v for k, v in mapping.items()}
        return Policy(tuple(Category(c.code, new.get(c, c.name), c.description) for c in self.categories))

    def add(self, name: str, description: str = "") -> Policy:
        return Policy((*self.categories, Category("", name, description)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Build from a mapping (e.g. parsed YAML).

        Either a full list: ``{"categories": [{"name": ..., "description": ...}, ...]}``, or
        edits of the default: ``{"drop": ["S6"], "rename": {"S10": "Hate Speech"},
        "add": [{"name": "Spam", "description": "..."}]}``.
        """
        if not isinstance(data, Mapping):
            raise ConfigError("a policy must be a mapping with 'categories' or drop/rename/add")
        unknown = set(data) - {"categories", "drop", "rename", "add", "base"}
        if unknown:
            shown = ", ".join(sorted(str(k)[:40] for k in unknown)[:8])
            raise ConfigError(f"unknown policy keys: {shown}; use categories, or drop/rename/add")
        try:
            if "categories" in data:
                policy = cls(tuple(_category(c) for c in _as_list(data["categories"], "categories", scalar_ok=False)))
            else:
                policy = cls()
            # rename before drop, so both name categories by their codes in the base list
            if data.get("rename"):
                rename = data["rename"]
                if not isinstance(rename, Mapping):
                    raise ConfigError("policy 'rename' must map codes to new names, e.g. {S10: Hate Speech}")
                policy = policy.rename({_name(k, "rename"): _name(v, "rename") for k, v in rename.items()})
            if data.get("drop"):
                policy = policy.drop(*(_name(d, "drop") for d in _as_list(data["drop"], "drop")))
            for extra in _as_list(data.get("add") or [], "add"):
                cat = _category(extra)
                policy = policy.add(cat.name, cat.description)
        except KeyError as exc:
            raise ConfigError(f"policy names an unknown category: {str(exc.args[0])[:60]}") from None
        return policy

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> Policy:
        import yaml

        try:
            text = Path(path_or_text).read_text(encoding="utf-8") if _is_file(path_or_text) else str(path_or_text)
        except UnicodeDecodeError:
            raise ConfigError(f"policy file {Path(path_or_text).name} is not UTF-8 text; write it as YAML") from None
        except OSError as exc:
            raise ConfigError(f"cannot read policy file {Path(path_or_text).name}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"policy YAML does not parse: {exc}".splitlines()[0][:200]) from None
        except RecursionError:
            raise ConfigError("policy YAML nests too deeply") from None
        if isinstance(data, Mapping) and "policy" in data:
            data = data["policy"]
        return cls.from_dict(data)

    @classmethod
    def coerce(cls, value: Policy | Mapping[str, Any] | str | Path | None) -> Policy:
        if value is None:
            return cls()
        if isinstance(value, Policy):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        return cls.from_yaml(value)


def _is_file(value: str | Path) -> bool:
    try:
        return "\n" not in str(value) and Path(value).is_file()
    except OSError:
        return False


def _as_list(value: Any, key: str = "categories", *, scalar_ok: bool = True) -> list[Any]:
    """A list (or, where ``scalar_ok``, one item) of a policy's key; anything else is a
    one-line ConfigError, never a TypeError from iterating a number."""
    if isinstance(value, (str, Mapping)) and scalar_ok:
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"policy {key!r} must be a list, got {type(value).__name__}")


def _name(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"policy {key!r} takes category codes or names, got {type(value).__name__}")
    return str(value)


def _check_text(what: str, value: Any, limit: int, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"a {what} must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise ConfigError(f"a {what} must not be empty")
    if len(value) > limit:
        raise ConfigError(f"a {what} has {len(value)} characters, over the limit of {limit}")


def _category(value: Any) -> Category:
    if isinstance(value, Category):
        return value
    if isinstance(value, str):
        return Category("", value, "")
    if isinstance(value, Mapping) and "name" in value:
        description = value.get("description", "")
        if description is None:
            description = ""
        if not isinstance(value["name"], str) or not isinstance(description, str):
            raise ConfigError("a category's name and description must be text")
        return Category("", value["name"], description.strip())
    raise ConfigError(f"a category needs a name, got {type(value).__name__}")


def categories_from(policy: Policy, tokens: Iterable[str]) -> tuple[Category, ...]:
    out: list[Category] = []
    for tok in tokens:
        cat = policy.resolve(tok)
        if cat is not None and cat not in out:
            out.append(cat)
    return tuple(out)
