"""What every door says about a block, named once: the stages a rail judges and the default
refusal. Each adapter maps its framework's vocabulary onto this table (LangChain's
``exit_behavior``, LlamaIndex's ``on_block`` / ``on_unsafe``, NeMo's flows) and nothing else.

| stage    | the judge's direction | what is judged                                        |
|----------|-----------------------|-------------------------------------------------------|
| input    | input                 | the user's message, before the model reads it         |
| output   | output                | the model's answer, in the context of the user's turn |
| tool     | input                 | a tool result or retrieved content the model will read |

NeMo's flows answer with NeMo's own ``bot refuse to respond`` message (its convention, which a
config can override); every other door answers with :data:`DEFAULT_REFUSAL` unless given a
template of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .prompt import Direction
from .verdict import Verdict

__all__ = ["DEFAULT_REFUSAL", "STAGES", "Stage", "refusal_text"]

Stage = Literal["input", "output", "tool"]

#: stage -> the direction the judge checks it in (see the table above)
STAGES: Mapping[Stage, Direction] = {"input": "input", "output": "output", "tool": "input"}

#: what a rail answers instead of blocked content; ``{categories}`` and ``{critique}`` are filled
#: from the verdict
DEFAULT_REFUSAL = "I can't help with that: it was flagged as unsafe ({categories})."


class _Keep(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def refusal_text(verdict: Verdict, template: str | None = None) -> str:
    """The user-facing refusal: ``{categories}`` and ``{critique}`` filled from the verdict; any
    other braces are left as written (a template is the app's text, never an error)."""
    if verdict.categories:
        categories = ", ".join(verdict.category_names)
    elif verdict.error:
        categories = "the safety check could not be completed"
    else:
        categories = "the safety policy"
    values = _Keep(categories=categories, critique=verdict.critique or "")
    chosen = template or DEFAULT_REFUSAL
    try:
        return chosen.format_map(values).strip()
    except (ValueError, IndexError, AttributeError):
        return chosen
