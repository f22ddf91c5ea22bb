"""OmniGuard for LlamaIndex: a node postprocessor that judges retrieved text and media, and
query / chat engines guarded on the way in and out.

    from llama_index_omniguard import GuardedQueryEngine, OmniGuardPostprocessor
    engine = index.as_query_engine(node_postprocessors=[OmniGuardPostprocessor()])
    safe = GuardedQueryEngine(engine)

Every component takes ``judge=`` (default: ``OmniGuard.shared()``, one model per process).
"""

from __future__ import annotations

from omniguard_plugins.errors import GuardViolation

from ._convert import message_parts, node_parts, query_parts
from ._stream import GuardedStreamingChatResponse
from .engines import GuardedChatEngine, GuardedQueryEngine
from .postprocessor import OmniGuardPostprocessor

__all__ = [
    "GuardViolation",
    "GuardedChatEngine",
    "GuardedQueryEngine",
    "GuardedStreamingChatResponse",
    "OmniGuardPostprocessor",
    "message_parts",
    "node_parts",
    "query_parts",
]
