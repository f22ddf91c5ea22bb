"""OmniGuardPostprocessor: judge every retrieved node, in one batched judge call, before the
LLM reads it.

    engine = index.as_query_engine(node_postprocessors=[OmniGuardPostprocessor(on_unsafe="drop")])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional, get_args

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from omniguard_plugins import OmniGuard, Verdict
from omniguard_plugins.content import Conversation, Turn
from omniguard_plugins.doors import Ask, Blocking, Stage
from omniguard_plugins.errors import GuardViolation
from omniguard_plugins.verdict import Mode

from ._blocking import JudgeRef, blocking, check_mode, judge_argument, verdict_metadata
from ._convert import node_parts, query_parts

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
    policy: Optional[Any] = Field(default=None, exclude=True)
    mode: Optional[Mode] = None

    _judge_ref: JudgeRef = PrivateAttr()
    _blocking: Blocking = PrivateAttr()

    def __init__(self, *args: OmniGuard, judge: OmniGuard | None = None, **settings: Any) -> None:
        judge = judge_argument(args, judge, "OmniGuardPostprocessor")
        super().__init__(judge=judge, **settings)  # type: ignore[call-arg]  # pydantic fields
        check_mode(self.mode)
        self._blocking = blocking(self.on_unsafe, get_args(OnUnsafeNode), "on_unsafe")
        self._judge_ref = JudgeRef(judge)

    @property
    def omniguard(self) -> OmniGuard:
        """The judge handed in, else the shared one, resolved once (not per call)."""
        return self._judge_ref()

    @classmethod
    def class_name(cls) -> str:
        return "OmniGuardPostprocessor"

    # ------------------------------------------------------------------ LlamaIndex hooks

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        items = self._items(nodes, query_bundle)
        return self._apply(nodes, self.omniguard.check_many(items) if items else [])

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        items = self._items(nodes, query_bundle)
        return self._apply(nodes, await self.omniguard.acheck_many(items) if items else [])

    # ------------------------------------------------------------------ the logic, once

    def _items(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> list[Ask]:
        """One check per node for a single check_many call, each converted inside the judge (a
        node that cannot be converted gets its failed verdict there, under ``on_error``)."""
        with_query = self.with_query and query_bundle is not None

        def builder(node: BaseNode) -> Callable[[], Conversation]:
            def build() -> Conversation:
                parts = node_parts(node)
                if with_query:
                    return Conversation((Turn("user", query_parts(query_bundle)), Turn("assistant", parts)))  # type: ignore[arg-type]
                return Conversation((Turn("user", parts),))

            return build

        stage: Stage = "output" if with_query else "tool"
        return [Ask(conversation=builder(item.node), stage=stage, policy=self.policy, mode=self.mode) for item in nodes]

    def _apply(self, nodes: list[NodeWithScore], verdicts: list[Verdict]) -> list[NodeWithScore]:
        """The one decision site: each node's verdict through ``Blocking.decide``."""
        kept: list[NodeWithScore] = []
        unsafe = sum(1 for v in verdicts if not v.safe)
        for node, verdict in zip(nodes, verdicts):
            try:
                decision = self._blocking.decide(verdict, "tool", node)
            except GuardViolation as err:
                err.args = (f"{err.args[0]} (retrieved node {node.node.node_id}; "
                            f"{unsafe} of {len(nodes)} retrieved nodes unsafe)",)
                raise
            if decision.action == "annotate" or (decision.allowed and self.on_unsafe == "annotate"):
                kept.append(self._annotated(node, verdict))
            elif decision.allowed:
                kept.append(node)
        return kept

    def _annotated(self, item: NodeWithScore, verdict: Verdict) -> NodeWithScore:
        """A copy of the node with the verdict in its metadata (the stored node is untouched)."""
        node = item.node.model_copy()
        key = self.metadata_key
        node.metadata = {**item.node.metadata, key: verdict_metadata(verdict, "tool")}
        node.excluded_embed_metadata_keys = _with(item.node.excluded_embed_metadata_keys, key)
        node.excluded_llm_metadata_keys = _with(item.node.excluded_llm_metadata_keys, key)
        return NodeWithScore(node=node, score=item.score)


def _with(keys: list[str], key: str) -> list[str]:
    return list(keys) if key in keys else [*keys, key]
