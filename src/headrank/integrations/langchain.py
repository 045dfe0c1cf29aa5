"""LangChain: ``HeadRankCompressor``, a ``BaseDocumentCompressor`` (use it alone or in a
``ContextualCompressionRetriever``). It returns the ``top_n`` best documents, best first, each a copy with its
metadata kept and HeadRank's ranking score added under ``score_key`` (``relevance_score``, as LangChain's Cohere
reranker does). The score orders one call's documents; it is not a probability. The documents' order is the
first stage's (best first): it is what ``fuse_first_stage`` fuses with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import Document
    from langchain_core.documents.compressor import BaseDocumentCompressor
except ImportError as err:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(f"headrank.integrations.langchain needs '{err.name}': pip install 'headrank[langchain]'") from err
from pydantic import ConfigDict, Field, PrivateAttr

from headrank.defaults import DEFAULT_PRESET
from headrank.integrations.source import check_settings, source_for


class HeadRankCompressor(BaseDocumentCompressor):
    """Rerank retrieved documents with HeadRank. ``reranker``: a preset name or model path (loaded on first
    use), a loaded ``HeadRanker``, or the URL of a running ``headrank serve`` (``api_key`` for its key)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = DEFAULT_PRESET
    top_n: int | None = Field(default=3, ge=1)  # None: every document
    score_key: str = "relevance_score"
    # Any: checked by HeadRank's own rules (no coercion of True to 1.0 or "yes" to True)
    fuse_first_stage: Any = None  # None: the ranker's setting; 0: the model alone
    safety_valve: Any = None  # None: the ranker's setting; False: off
    api_key: str | None = Field(default=None, repr=False)
    load_options: dict = Field(default_factory=dict)  # for a preset name: device, dtype, quantize, ...
    _source: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        check_settings(self.fuse_first_stage, self.safety_valve)
        self._source = source_for(self.reranker, api_key=self.api_key, **self.load_options)

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        scored = self._source.rank_texts(query, [d.page_content for d in documents], self.fuse_first_stage,
                                         self.safety_valve)
        out = []
        for s in scored[: self.top_n]:
            doc = documents[s.index]
            out.append(Document(page_content=doc.page_content, id=doc.id,
                                metadata={**doc.metadata, self.score_key: s.score}))
        return out
