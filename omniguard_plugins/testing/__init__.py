"""Test tools for omniguard-plugins and for users testing their own guarded apps.

- :class:`ScriptedBackend`: a backend whose answers come from a Python function, so a test can
  decide each verdict exactly (the ``MockTransport`` of this project).
- :func:`scripted_judge`: an ``OmniGuard`` on a ScriptedBackend in one call.
- :func:`write_answer`: an answer in the checkpoints' format, for a handler to return.
- :func:`build_tiny_checkpoint`: a tiny, offline, OmniGuard-shaped Qwen2.5-Omni checkpoint
  (full-model layout, real tokenizer/processor classes) for end-to-end tests of the
  transformers path. With ``train=True`` it is trained to answer in the OmniGuard format and
  to call text containing a trigger word unsafe, and an image judged alone unsafe when it is
  mostly red (see :mod:`._tiny` for the exact rule), so its verdicts depend on the input.
"""

from __future__ import annotations

from ..answer_format import write_answer
from ._scripted import ScriptedBackend, is_mostly_red, keyword_handler, scripted_judge
from ._tiny import TINY_TRIGGERS, build_tiny_checkpoint, tiny_checkpoint  # noqa: E402

__all__ = [
    "TINY_TRIGGERS",
    "ScriptedBackend",
    "build_tiny_checkpoint",
    "is_mostly_red",
    "keyword_handler",
    "scripted_judge",
    "tiny_checkpoint",
    "write_answer",
]
