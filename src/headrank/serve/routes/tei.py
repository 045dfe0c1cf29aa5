"""Hugging Face Text Embeddings Inference: ``POST /rerank`` (``query``, ``texts``) -> ``[{index, score, text?}]``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from headrank.serve.schemas import TEIRequest, TEIResult, shown_scores

router = APIRouter(tags=["TEI"])


@router.post("/rerank", response_model=list[TEIResult])
async def tei_rerank(body: TEIRequest, request: Request) -> JSONResponse:
    """TEI's rerank. ``truncate`` false: a text longer than the passage budget is a 413; ``truncation_direction``
    Left keeps a long text's end."""
    ranking = await request.app.state.service.rank(request, body.query, body.texts, None, body.fuse_first_stage,
                                                   body.safety_valve, body.truncate,
                                                   body.truncation_direction.lower())
    shown = shown_scores(ranking, len(body.texts), body.raw_scores)
    rows = []
    for r in ranking:
        row = {"index": r.corpus_id, "score": shown[r.corpus_id]}
        if body.return_text:
            row["text"] = body.texts[r.corpus_id]
        rows.append(row)
    return JSONResponse(rows)
