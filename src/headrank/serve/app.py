"""The FastAPI application (routers over one ``Service``) and running it with uvicorn, with logging."""

from __future__ import annotations

import importlib
import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from headrank.serve.config import ServeConfig
from headrank.serve.middleware import Guard
from headrank.serve.routes import ROUTERS
from headrank.serve.routes.ops import DOCS_ASSETS, docs_assets_dir
from headrank.serve.schemas import ServiceError, envelope
from headrank.serve.service import Service


def create_app(config: ServeConfig, ranker=None) -> FastAPI:
    """The service. ``ranker`` (a loaded HeadRanker) skips loading; otherwise the model loads in the background
    after start-up, and ``/health`` answers 503 until it is ready."""
    from headrank import __version__

    service = Service(config, ranker)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        await service.stop()

    app = FastAPI(title="HeadRank", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Decoding-free passage reranking from a decoder LLM's attention heads.")
    app.state.service = service
    app.state.metrics = service.metrics
    paths = {"/openapi.json"}  # route templates, the metrics' route labels
    for name in ROUTERS:
        router = importlib.import_module(f"headrank.serve.routes.{name}").router
        app.include_router(router)
        paths |= {route.path for route in router.routes}
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(docs_assets_dir())), name="docs-assets")
    _errors(app)
    if config.api_key:
        _bearer_in_openapi(app)
    app.add_middleware(Guard, config=config, metrics=service.metrics, envelope=envelope, routes=lambda: paths)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError):
        return envelope(request.url.path, err.status, err.message, err.error_type, err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return envelope(request.url.path, 422, "; ".join(parts) or "invalid request", "Validation")


def _bearer_in_openapi(app: FastAPI) -> None:
    """With an API key, the OpenAPI document declares bearer auth, so Swagger's "Authorize" takes the key."""
    plain = app.openapi

    def openapi() -> dict:
        schema = plain()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer", "description": "the server's --api-key"}
        schema["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the access log's fields."""

    FIELDS = ("method", "route", "status", "latency_ms", "request_id")

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", json_logs: bool = False) -> None:
    """Our loggers (access log included) and uvicorn's on stderr at ``level``; plain text or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s "
                                                                             "%(name)s: %(message)s"))
    for name in ("headrank", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def serve(config: ServeConfig) -> None:
    """Run the service with uvicorn until interrupted; in-flight requests finish on shutdown."""
    import uvicorn

    configure_logging(config.log_level, config.json_logs)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_config=None,
                log_level=config.log_level, access_log=False,  # ours has route, latency and request id
                timeout_graceful_shutdown=int(config.request_timeout_s))
