"""The FastAPI application (routers over one ``Service``) and running it with uvicorn, with logging."""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from headrank.serve.config import ServeConfig
from headrank.serve.middleware import Guard, route_path
from headrank.serve.routes import ROUTERS
from headrank.serve.routes.ops import DOCS_ASSETS, docs_assets_dir
from headrank.serve.schemas import ServiceError, envelope
from headrank.serve.service import Service

logger = logging.getLogger(__name__)


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
        return envelope(route_path(request.scope), err.status, err.message, err.error_type, err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return envelope(route_path(request.scope), 422, "; ".join(parts) or "invalid request", "Validation")


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
    """One JSON object per line: time (ISO 8601, milliseconds, zone), level, logger, message and the access
    log's fields."""

    FIELDS = ("method", "route", "status", "latency_ms", "request_id")

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        out = {"time": when, "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", json_logs: bool = False) -> None:
    """Our loggers (access log included), uvicorn's and the libraries' on stderr at ``level``; plain text or
    JSON lines. With JSON, every stderr line is one object: Python warnings and the model libraries' logs go
    through the same handler and their progress bars are off."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s "
                                                                             "%(name)s: %(message)s"))
    for name in ("headrank", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False
    if json_logs:
        _libraries_through(handler)


def _libraries_through(handler: logging.Handler) -> None:
    """Route warnings and the model libraries' logging to ``handler``; switch their progress bars off."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("transformers", "huggingface_hub", "py.warnings", "torch"):
        log = logging.getLogger(name)
        log.handlers[:] = []
        log.propagate = True
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass


class DrainingServer:
    """uvicorn with a drain window: the first SIGTERM/SIGINT marks the service as draining (``/health`` 503,
    requests still served) for ``drain_seconds``, then uvicorn's own graceful shutdown closes the listener and
    lets in-flight requests finish. A second signal stops at once."""

    def __init__(self, config, service, drain_seconds: float) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(inner, sig, frame) -> None:  # noqa: N805 - uvicorn's signal hook
                if drain_seconds > 0 and not service.draining:
                    service.draining = True
                    logger.info("draining for %g s before shutting down (/health answers 503)", drain_seconds)
                    timer = threading.Timer(drain_seconds, uvicorn.Server.handle_exit, (inner, sig, frame))
                    timer.daemon = True
                    timer.start()
                    return
                uvicorn.Server.handle_exit(inner, sig, frame)

        self.server = Server(config)

    def run(self) -> None:
        self.server.run()


def serve(config: ServeConfig) -> None:
    """Run the service with uvicorn until interrupted; with ``drain_seconds`` the health check fails first,
    then in-flight requests finish on shutdown."""
    import uvicorn

    configure_logging(config.log_level, config.json_logs)
    app = create_app(config)
    settings = uvicorn.Config(app, host=config.host, port=config.port, log_config=None, log_level=config.log_level,
                              access_log=False,  # ours has route, latency and request id
                              timeout_graceful_shutdown=int(config.request_timeout_s), root_path=config.root_path)
    DrainingServer(settings, app.state.service, config.drain_seconds).run()
