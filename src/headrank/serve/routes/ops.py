"""Operations: ``/health``, ``/info``, ``/v1/models``, ``/metrics`` (Prometheus), and the API docs (``/docs``,
``/redoc``) with Swagger UI / ReDoc assets served from this server (no CDN: they work offline)."""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from headrank.serve.schemas import ServiceError, score_description

router = APIRouter(tags=["Operations"])
DOCS_ASSETS = "/static-docs"


def docs_assets_dir():
    """Swagger UI and ReDoc files from the ``fastapi-offline`` package (part of the serve extra)."""
    from importlib.resources import files

    return files("fastapi_offline").joinpath("static")


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 when the model is loaded and the server takes requests; 503 while loading, after a failed load, and
    from SIGTERM on (through ``--drain-seconds``, while requests are still served, so a load balancer stops
    sending before the listener closes)."""
    service = request.app.state.service
    if service.draining:
        raise ServiceError(503, "draining: the server is shutting down", "Unhealthy")
    service.ready()
    return JSONResponse({"status": "ok"})


@router.get("/info")
async def info(request: Request) -> JSONResponse:
    from headrank import __version__

    service = request.app.state.service
    r = service.ranker
    settings = r.settings_for(service.config.fuse_first_stage, service.config.safety_valve) if r else None
    return JSONResponse({
        "model": service.served_name(), "preset": r.preset if r else None, "method": r.method if r else None,
        "heads": [list(h) for h in r.heads.heads] if r and r.method != "icr" else None,
        "inference": asdict(settings) if settings else None, "ready": r is not None,
        "limits": service.config.limits(), "version": __version__, "presets": service.models(),
        "auth": bool(service.config.api_key),
        "process": {"pid": os.getpid(), "host": socket.gethostname()},  # which replica answered (serve --ray)
        "scores": score_description(False, r is not None and r.relevance is not None),
        "relevance_calibration": r.relevance.to_dict() if r is not None and r.relevance is not None else None,
    })


@router.get("/v1/models")
async def models(request: Request) -> JSONResponse:
    service = request.app.state.service
    created = int(service.loaded_at or time.time())
    return JSONResponse({"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                                      "owned_by": "headrank"} for name in service.models()]})


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    service = request.app.state.service
    service.metrics.queue_size.set(service.queue.qsize() if service.queue else 0)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# The pages may load only what this server serves (and inline data): nothing from a CDN, even by accident.
DOCS_POLICY = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' "
                                          "'unsafe-inline'; script-src 'self' 'unsafe-inline'; worker-src 'self' blob:"}
# ReDoc's sidebar footer loads Redocly's logo from its CDN; the same link shows a plain inline mark instead.
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
INLINE_LOGO = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='16' height='16'%3E%3Crect "
               "width='16' height='16' rx='3' fill='%23888'/%3E%3C/svg%3E")


def _root(request: Request) -> str:
    return request.scope.get("root_path", "")


@router.get("/docs", include_in_schema=False)
async def swagger(request: Request) -> Response:
    root = _root(request)
    page = get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="HeadRank API",
                               swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                               oauth2_redirect_url=None, swagger_ui_parameters={"validatorUrl": None})
    page.headers.update(DOCS_POLICY)
    return page


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> Response:
    root = _root(request)
    page = get_redoc_html(openapi_url=f"{root}/openapi.json", title="HeadRank API",
                          redoc_js_url=f"{root}/redoc.js", redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                          with_google_fonts=False)
    page.headers.update(DOCS_POLICY)
    return page


@router.get("/redoc.js", include_in_schema=False)
async def redoc_script() -> Response:
    return Response(_redoc_script(), media_type="text/javascript; charset=utf-8")


@functools.lru_cache(maxsize=1)
def _redoc_script() -> str:
    """ReDoc's bundle with its one CDN image replaced by an inline one (read once)."""
    return docs_assets_dir().joinpath("redoc.standalone.js").read_text(encoding="utf-8").replace(REDOC_CDN_LOGO,
                                                                                               INLINE_LOGO)
