"""Hugging Face Text Embeddings Inference: ``POST /rerank`` (``query``, ``texts``) -> ``[{index, score, text?}]``."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from headrank.serve.schemas import TEIRequest, normalized_scores

router = APIRouter(tags=["TEI"])


@router.post("/rerank")
async def tei_rerank(body: TEIRequest, request: Request) -> JSONResponse:
    ranking = await request.app.state.service.rank(request, body.query, body.texts, None, body.fuse_first_stage,
                                                         body.safety_valve)
    scores = [0.0] * len(body.texts)
    for r in ranking:
        scores[r.corpus_id] = r.score
    shown = scores if body.raw_scores else normalized_scores(scores)
    rows = []
    for r in ranking:
        value = shown[r.corpus_id]
        row = {"index": r.corpus_id, "score": value if math.isfinite(value) else None}
        if body.return_text:
            row["text"] = body.texts[r.corpus_id]
        rows.append(row)
    return JSONResponse(rows)
