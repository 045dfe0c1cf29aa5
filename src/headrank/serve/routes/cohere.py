"""Cohere v1/v2, Jina and vLLM: ``POST /v1/rerank`` and ``POST /v2/rerank`` (one handler, the union of fields)."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from headrank.serve.schemas import RerankRequest, RerankResponse, score_description, shown_scores, texts_of

router = APIRouter(tags=["Cohere / Jina / vLLM"])


@router.post("/v1/rerank", response_model=RerankResponse)
@router.post("/v2/rerank", response_model=RerankResponse)
async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
    """Results best first by the ranking rule (fused with the input order when fusion is on).
    ``relevance_score``: the passage's calibrated probability of being relevant (comparable across requests);
    ``meta.headrank.scores`` says what it is for this model and request."""
    service = request.app.state.service
    texts = texts_of(body.documents)
    started = time.perf_counter()
    ranking = await service.rank(request, body.query, texts, body.max_tokens_per_doc, body.fuse_first_stage,
                                 body.safety_valve)
    shown = shown_scores(ranking, len(texts), body.raw_scores)
    rows = [_row(r, shown[r.corpus_id], body) for r in ranking][: body.top_n or None]
    ranker = service.ranker
    meta = {"api_version": {"version": "2" if request.url.path.startswith("/v2") else "1"},
            "billed_units": {"search_units": 1},
            "headrank": {"preset": ranker.preset, "method": ranker.method, "inference": asdict(ranking.settings),
                         "valve_fired": ranking.valve_fired,
                         "latency_ms": round(1000 * (time.perf_counter() - started), 1),
                         "scores": score_description(body.raw_scores, ranker.relevance is not None)}}
    return JSONResponse({"id": str(uuid.uuid4()), "model": service.served_name(), "results": rows,
                         "usage": {"prompt_tokens": ranking.prompt_tokens, "total_tokens": ranking.prompt_tokens},
                         "meta": meta})


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _row(result, value: float | None, body: RerankRequest) -> dict:
    row: dict[str, Any] = {"index": result.corpus_id, "relevance_score": _finite(value)}
    if body.return_ranking_scores:
        row["ranking_score"] = _finite(result.score)
        row["model_score"] = _finite(result.model_score)
    if body.return_documents:
        doc = body.documents[result.corpus_id]
        row["document"] = {"text": doc} if isinstance(doc, str) else doc.model_dump()
    return row
