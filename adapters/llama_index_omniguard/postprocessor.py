"""OmniGuardPostprocessor: judge every retrieved node, in one batched judge call, before the
LLM reads it.

    engine = index.as_query_engine(node_postprocessors=[OmniGuardPostprocessor(on_unsafe="drop")])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional

from llama_index.core.bridge.pydantic import Field
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Turn

from ._convert import node_parts, query_parts
from ._rails import resolve_judge, verdict_info, violation

__all__ = ["OmniGuardPostprocessor", "OnUnsafeNode"]

#: what to do with a node the judge calls unsafe
OnUnsafeNode = Literal["drop", "annotate", "raise"]

class OmniGuardPostprocessor(BaseNodePostprocessor):
    """Judges retrieved nodes (text, images, audio, video) and drops, annotates or refuses
    the unsafe ones.

    ``on_unsafe``: ``"drop"`` removes unsafe nodes; ``"annotate"`` keeps every node and writes
    the verdict under ``node.metadata[metadata_key]`` (excluded from the embedding and LLM
    metadata, so it never reaches the prompt); ``"raise"`` raises ``GuardViolation``.
    ``with_query=True`` judges each node as an answer to the query (user=query,
    assistant=node), catching content that is only harmful in context; the default judges
    each node alone.
    """

    judge: Optional[OmniGuard] = Field(default=None, exclude=True, description="default: OmniGuard.shared()")
    on_unsafe: OnUnsafeNode = "drop"
    with_query: bool = False
    metadata_key: str = "omniguard"

    def __init__(self, judge: OmniGuard | None = None, **settings: Any) -> None:
        super().__init__(judge=judge, **settings)

    @classmethod
    def class_name(cls) -> str:
        return "OmniGuardPostprocessor"

    # ------------------------------------------------------------------ LlamaIndex hooks

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        items = self._items(nodes, query_bundle)
        return self._apply(nodes, resolve_judge(self.judge).check_many(items) if items else [])

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        items = self._items(nodes, query_bundle)
        return self._apply(nodes, await resolve_judge(self.judge).acheck_many(items) if items else [])

    # ------------------------------------------------------------------ the logic, once

    def _items(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> list[Conversation | Callable[[], Conversation]]:
        """One check per node for a single check_many call, each converted inside the judge (a
        node that cannot be converted gets its failed verdict there, under ``on_error``)."""
        with_query = self.with_query and query_bundle is not None

        def build(node: BaseNode) -> Conversation:
            parts = node_parts(node)
            if with_query:
                return Conversation((Turn("user", query_parts(query_bundle)), Turn("assistant", parts)))  # type: ignore[arg-type]
            return Conversation((Turn("user", parts),))

        return [lambda n=item.node: build(n) for item in nodes]

    def _apply(self, nodes: list[NodeWithScore], verdicts: list[Verdict]) -> list[NodeWithScore]:
        unsafe = [(n, v) for n, v in zip(nodes, verdicts) if not v.safe]
        if self.on_unsafe == "raise" and unsafe:
            node, verdict = unsafe[0]
            err = violation("tool", verdict, node, f"retrieved node {node.node.node_id}")
            err.args = (f"{err.args[0]} ({len(unsafe)} of {len(nodes)} retrieved nodes unsafe)",)
            raise err
        if self.on_unsafe == "annotate":
            return [self._annotated(n, v) for n, v in zip(nodes, verdicts)]
        return [n for n, v in zip(nodes, verdicts) if v.safe]

    def _annotated(self, item: NodeWithScore, verdict: Verdict) -> NodeWithScore:
        """A copy of the node with the verdict in its metadata (the stored node is untouched)."""
        node = item.node.model_copy()
        key = self.metadata_key
        node.metadata = {**item.node.metadata, key: verdict_info(verdict)}
        node.excluded_embed_metadata_keys = _with(item.node.excluded_embed_metadata_keys, key)
        node.excluded_llm_metadata_keys = _with(item.node.excluded_llm_metadata_keys, key)
        return NodeWithScore(node=node, score=item.score)


def _with(keys: list[str], key: str) -> list[str]:
    return list(keys) if key in keys else [*keys, key]
