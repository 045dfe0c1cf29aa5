"""The first stage as a reranker: the input order itself (what every reranker must beat)."""

from __future__ import annotations

from headrank.rerankers.base import ScoreReranker


def load(model: str | None = None, **options) -> ScoreReranker:
    if model is not None or options:
        raise ValueError("the firststage reranker keeps the input order: it takes no model or options")
    return ScoreReranker("firststage", lambda query, passages: [float(len(passages) - i) for i in range(len(passages))])
