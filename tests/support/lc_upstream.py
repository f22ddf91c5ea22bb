"""The doors' small OpenAI-compatible upstream (``tests/support/upstream_app.py``), served on
loopback in a thread, for LangChain's real ``ChatOpenAI`` (streamed word by word)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.demo_helpers import serving
from tests.support.upstream_app import REPLIES, create_upstream

__all__ = ["REPLIES", "serve_upstream"]


@contextmanager
def serve_upstream() -> Iterator[str]:
    """The upstream's OpenAI base URL (``http://127.0.0.1:<port>/v1``) while the block runs."""
    with serving(create_upstream()) as url:
        yield f"{url}/v1"
