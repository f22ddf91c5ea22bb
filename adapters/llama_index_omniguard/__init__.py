"""OmniGuard for LlamaIndex: a guarded LLM for agents and workflows, a node postprocessor that
judges retrieved text and media, and query / chat engines guarded on the way in and out.

    from llama_index_omniguard import GuardedQueryEngine, OmniGuardLLM, OmniGuardPostprocessor
    agent = FunctionAgent(tools=[...], llm=OmniGuardLLM(llm))
    engine = index.as_query_engine(node_postprocessors=[OmniGuardPostprocessor()])
    safe = GuardedQueryEngine(engine)

Every component takes ``judge=`` (default: ``OmniGuard.shared()``, one model per process).
"""

from __future__ import annotations

from omniguard_plugins.errors import GuardViolation

from ._blocking import ON_BLOCK
from ._convert import answer_parts, message_parts, node_parts, query_parts
from ._stream import GuardedStreamingChatResponse
from .engines import GuardedChatEngine, GuardedQueryEngine
from .llm import OmniGuardLLM
from .postprocessor import OmniGuardPostprocessor

__all__ = [
    "ON_BLOCK",
    "GuardViolation",
    "GuardedChatEngine",
    "GuardedQueryEngine",
    "GuardedStreamingChatResponse",
    "OmniGuardLLM",
    "OmniGuardPostprocessor",
    "answer_parts",
    "message_parts",
    "node_parts",
    "query_parts",
]
