"""The playground page (``GET /``: no build step, no CDN) and ``POST /v1/explain`` behind it: the ranking with
per-token contributions (``headrank.explain``), through the same queue, timeout and cancellation as rerank."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from headrank.serve.schemas import ExplainRequest, texts_of

router = APIRouter(tags=["Explain"])


@router.get("/", include_in_schema=False)
async def playground() -> Response:
    from importlib.resources import files

    page = files("headrank").joinpath("web/playground.html").read_text(encoding="utf-8")
    return Response(page, media_type="text/html; charset=utf-8")


@router.post("/v1/explain")
async def explain(body: ExplainRequest, request: Request) -> JSONResponse:
    """Every passage with its rank, the score that ranks it (``ranking_score``), the model's attention score
    (``score``, the sum of the token contributions) and, when fused, the parts of the fused score."""
    service = request.app.state.service
    started = time.perf_counter()
    ranker, explanations = await service.explain(request, body.model, body.query, texts_of(body.documents),
                                                 body.fuse_first_stage, body.safety_valve)
    results = [{"index": e.corpus_id, **{k: v for k, v in e.to_dict().items() if k != "corpus_id"}}
               for e in explanations]
    settings = ranker.settings_for(service.fusion(body.fuse_first_stage), service.valve(body.safety_valve))
    return JSONResponse({"model": ranker.preset or ranker.model.name, "method": ranker.method,
                         "inference": asdict(settings),
                         "valve_fired": any(e.valve_fired for e in explanations),
                         "latency_ms": round(1000 * (time.perf_counter() - started), 1), "results": results})
