"""LlamaIndex: ``HeadRankRerank``, a node postprocessor (``node_postprocessors=[HeadRankRerank(...)]`` on a query
engine, or ``postprocess_nodes`` alone). It returns the ``top_n`` best nodes, best first, as ``NodeWithScore``
with HeadRank's ranking score (it orders one call's nodes; it is not a probability). With
``keep_retrieval_score`` the first stage's score stays in the node's metadata under ``retrieval_score``, as
LlamaIndex's own rerankers do. The nodes' order is the first stage's: it is what ``fuse_first_stage`` fuses
with. Text is ``get_content(metadata_mode)`` (``EMBED`` by default, like LlamaIndex's rerankers)."""

from __future__ import annotations

from typing import Any

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as err:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(f"headrank.integrations.llama_index needs '{err.name}': "
                      "pip install 'headrank[llama-index]'") from err

from headrank.defaults import DEFAULT_PRESET
from headrank.integrations.source import check_settings, source_for


class HeadRankRerank(BaseNodePostprocessor):
    """Rerank nodes with HeadRank. ``reranker``: a preset name or model path (loaded on first use), a loaded
    ``HeadRanker``, or the URL of a running ``headrank serve`` (``api_key`` for its key)."""

    reranker: Any = Field(default=DEFAULT_PRESET, description="preset, model path, HeadRanker or serve URL")
    top_n: int = Field(default=2, ge=1, description="Number of nodes to return, best first.")
    # Any: checked by HeadRank's own rules (no coercion of True to 1.0 or "yes" to True)
    fuse_first_stage: Any = None  # None: the ranker's setting; 0: the model alone
    safety_valve: Any = None  # None: the ranker's setting; False: off
    keep_retrieval_score: bool = False
    metadata_mode: MetadataMode = MetadataMode.EMBED
    api_key: str | None = Field(default=None, repr=False, exclude=True)
    load_options: dict = Field(default_factory=dict)
    _source: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        check_settings(self.fuse_first_stage, self.safety_valve)
        self._source = source_for(self.reranker, api_key=self.api_key, **self.load_options)

    @classmethod
    def class_name(cls) -> str:
        return "HeadRankRerank"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("HeadRankRerank needs the query: pass query_bundle or query_str")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        payload = {EventPayload.NODES: nodes, EventPayload.MODEL_NAME: str(self.reranker),
                   EventPayload.QUERY_STR: query_bundle.query_str, EventPayload.TOP_K: self.top_n}
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            scored = self._source.rank_texts(query_bundle.query_str, texts, self.fuse_first_stage, self.safety_valve)
            out = []
            for s in scored[: self.top_n]:
                node = nodes[s.index].node
                if self.keep_retrieval_score:
                    node.metadata["retrieval_score"] = nodes[s.index].score
                out.append(NodeWithScore(node=node, score=s.score))
            event.on_end(payload={EventPayload.NODES: out})
        return out
