"""Cohere v1/v2, Jina and vLLM: ``POST /v1/rerank`` and ``POST /v2/rerank`` (one handler, the union of fields)."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from headrank.serve.schemas import RerankRequest, normalized_scores, texts_of

router = APIRouter(tags=["Cohere / Jina / vLLM"])


@router.post("/v1/rerank")
@router.post("/v2/rerank")
async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
    """Results best first. ``relevance_score``: the ranking score (the fused one when fusion is on) min-max
    normalized within the request; it orders this request's documents and is not an absolute relevance."""
    service = request.app.state.service
    texts = texts_of(body.documents)
    started = time.perf_counter()
    ranking = await service.rank(request, body.query, texts, body.max_tokens_per_doc, body.fuse_first_stage,
                                 body.safety_valve)
    rows = [_row(r, shown, body) for r, shown in _shown(ranking, len(texts), body.raw_scores)][: body.top_n or None]
    ranker = service.ranker
    meta = {"api_version": {"version": "2" if request.url.path.startswith("/v2") else "1"},
            "billed_units": {"search_units": 1},
            "headrank": {"preset": ranker.preset, "method": ranker.method, "inference": asdict(ranking.settings),
                         "valve_fired": ranking.valve_fired,
                         "latency_ms": round(1000 * (time.perf_counter() - started), 1),
                         "scores": score_description(body.raw_scores, ranking.settings.fuse_first_stage)}}
    return JSONResponse({"id": str(uuid.uuid4()), "model": service.served_name(), "results": rows,
                         "usage": {"prompt_tokens": ranking.prompt_tokens, "total_tokens": ranking.prompt_tokens},
                         "meta": meta})


def score_description(raw: bool, fuse: float | None) -> str:
    what = (f"fused with the input order (weighted RRF, w={fuse:g}; a rank-based score)" if fuse
            else "the model's listwise attention score")
    return f"{what}, {'raw' if raw else 'min-max normalized within the request'}"


def _shown(ranking, n: int, raw: bool) -> list[tuple[Any, float]]:
    """Each result with the score to show (raw, or min-max within the request)."""
    scores = [0.0] * n
    for r in ranking:
        scores[r.corpus_id] = r.score
    shown = scores if raw else normalized_scores(scores)
    return [(r, shown[r.corpus_id]) for r in ranking]


def _row(result, value: float, body: RerankRequest) -> dict:
    row: dict[str, Any] = {"index": result.corpus_id, "relevance_score": value if math.isfinite(value) else None}
    if body.return_documents:
        doc = body.documents[result.corpus_id]
        row["document"] = {"text": doc} if isinstance(doc, str) else doc.model_dump()
    return row
