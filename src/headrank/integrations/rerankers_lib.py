"""The ``rerankers`` library: ``HeadRankRanker``, a ``rerankers`` ``BaseRanker``, for code written against
``rerankers`` (``ranker.rank(query, docs, doc_ids, metadata)`` -> ``RankedResults``, ``top_k``,
``get_result_by_docid``). Scores are HeadRank's ranking scores, best first (they
order one call's documents; they are not probabilities). The documents' order is the first stage's: it is what
``fuse_first_stage`` fuses with. (Named ``rerankers_lib`` so that it is not confused with ``headrank.rerankers``,
HeadRank's own backends.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from rerankers.documents import Document
    from rerankers.models.ranker import BaseRanker
    from rerankers.results import RankedResults, Result
except ImportError as err:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(f"headrank.integrations.rerankers_lib needs '{err.name}': "
                      "pip install 'headrank[rerankers]'") from err

from headrank.defaults import DEFAULT_PRESET
from headrank.integrations.source import check_settings, merged, source_for


class HeadRankRanker(BaseRanker):
    """``model_name_or_path``: a preset name, a model path, the URL of a running ``headrank serve``, or a loaded
    ``HeadRanker``. Keyword options: ``fuse_first_stage``, ``safety_valve``, ``api_key`` (for a URL) and
    ``HeadRanker.from_pretrained`` options (device, dtype, ...)."""

    def __init__(self, model_name_or_path: Any = DEFAULT_PRESET, verbose: int = 1, *,
                 fuse_first_stage: float | None = None, safety_valve: bool | None = None,
                 api_key: str | None = None, **load_options: Any) -> None:
        check_settings(fuse_first_stage, safety_valve)
        self.verbose, self.ranking_type = verbose, "listwise"
        self.fuse_first_stage, self.safety_valve = fuse_first_stage, safety_valve
        self.source = source_for(model_name_or_path, api_key=api_key, **load_options)

    def rank(self, query: str, docs: str | Sequence[str] | Document | Sequence[Document],
             doc_ids: Sequence[str] | Sequence[int] | None = None, metadata: Sequence[dict] | None = None,
             fuse_first_stage: float | None = None, safety_valve: bool | None = None) -> RankedResults:
        """All documents best first (ids default to 0..n-1, as in ``rerankers``); this call's fusion weight and
        valve win over the ranker's."""
        documents = _documents(docs, doc_ids, metadata)
        fuse, valve = merged(fuse_first_stage, self.fuse_first_stage), merged(safety_valve, self.safety_valve)
        check_settings(fuse, valve)
        scored = self.source.rank_texts(query, [d.text for d in documents], fuse, valve)
        results = [Result(document=documents[s.index], score=s.score, rank=s.rank) for s in scored]
        return RankedResults(results=results, query=query, has_scores=True)

    def score(self, query: str, doc: str) -> float | None:
        """One document's score, ranked alone (a listwise score: compare scores within one ``rank`` call)."""
        return self.rank(query, [doc]).results[0].score


def _documents(docs: Any, doc_ids: Any, metadata: Any) -> list[Document]:
    """``rerankers`` Documents from strings or Documents, with ids and metadata; lengths must agree."""
    if isinstance(docs, (str, Document)):
        docs = [docs]
    docs = list(docs)
    for name, values in (("doc_ids", doc_ids), ("metadata", metadata)):
        if values is not None and len(values) != len(docs):
            raise ValueError(f"{name} has {len(values)} entries for {len(docs)} documents")
    out = []
    for i, d in enumerate(docs):
        if isinstance(d, Document):
            doc_id = doc_ids[i] if doc_ids is not None else (d.doc_id if d.doc_id is not None else i)
            meta = metadata[i] if metadata is not None else d.metadata
            out.append(Document(text=d.text, doc_id=doc_id, metadata=meta))
        elif isinstance(d, str):
            out.append(Document(text=d, doc_id=doc_ids[i] if doc_ids is not None else i,
                                metadata=metadata[i] if metadata is not None else None))
        else:
            raise TypeError(f"document {i} must be a string or a rerankers Document, got {type(d).__name__}")
    return out
