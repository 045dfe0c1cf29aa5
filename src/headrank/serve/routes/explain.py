"""The playground page (``GET /``: no build step, no CDN), its examples (``GET /v1/examples``) and ``POST
/v1/explain`` behind it: the ranking with per-token contributions (``headrank.engine.explain``), through the same queue,
timeout and cancellation as rerank."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from headrank.serve.schemas import ExplainRequest, texts_of

router = APIRouter(tags=["Explain"])
log = logging.getLogger(__name__)

# Typed by hand, so it has no first-stage order: the playground ranks it by the model alone.
PLAYGROUND_EXAMPLE = {
    "query": "How do solar panels generate electricity?",
    "documents": [
        "Photovoltaic cells in a solar panel absorb sunlight; the energy frees electrons in the silicon, which "
        "flow as an electric current.",
        "Sourdough rises because wild yeast and lactic acid bacteria ferment the dough.",
        "An inverter turns the direct current from the panels into the alternating current that homes use.",
        "The Great Wall of China stretches for thousands of kilometres across northern China.",
        "Panels produce less power when they are hot, so installers leave a gap for air to cool them.",
    ],
}
FIRST_STAGE_DEPTH = 10  # passages of the real first-stage example: ten cards fit a screen or two


@functools.lru_cache(maxsize=1)
def first_stage_example() -> dict | None:
    """The first judged DL19 query's BM25 top 10 with its judgments, when the benchmark data is on this server
    (``$HEADRANK_DATA`` or ``../shared/data``); None otherwise."""
    from headrank.data.benchmarks import first_judged_list

    try:
        example = first_judged_list("dl19", FIRST_STAGE_DEPTH)
    except (FileNotFoundError, ValueError) as err:
        log.info("playground: no first-stage example (%s)", err)
        return None
    documents = [" ".join(t.split()) for t in example.texts]  # one line each in the playground's text box
    return {"source": example.source, "query": example.query, "documents": documents,
            "grades": [example.grades.get(d) for d in example.docids],
            "grade_names": {"0": "not relevant", "1": "related", "2": "highly relevant", "3": "perfectly relevant"}}


@router.get("/", include_in_schema=False)
async def playground() -> Response:
    from importlib.resources import files

    page = files("headrank").joinpath("web/playground.html").read_text(encoding="utf-8")
    return Response(page, media_type="text/html; charset=utf-8")


@router.get("/v1/examples", include_in_schema=False)
async def examples() -> JSONResponse:
    """The playground's examples: one typed by hand (no first-stage order) and, when this server has the
    benchmark data, one real first-stage list (null otherwise)."""
    return JSONResponse({"typed": PLAYGROUND_EXAMPLE, "first_stage": await run_in_threadpool(first_stage_example)})


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
