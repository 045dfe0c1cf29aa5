"""Pure ASGI middleware in front of every route (it leaves a client's disconnect visible to the routes):
API key, body size and type, a request id, the access log, and request metrics by route template."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable

from headrank.serve.config import ServeConfig
from headrank.serve.metrics import UNMATCHED, Metrics

logger = logging.getLogger(__name__)
access_log = logging.getLogger("headrank.access")
# Pages and the API description carry no data: usable without a key, so a browser can load them and the
# user types the key into the page (the playground's key field, Swagger's "Authorize").
OPEN_PATHS = ("/health", "/", "/docs", "/redoc", "/redoc.js", "/openapi.json")
OPEN_PREFIXES = ("/static-docs/",)


def route_path(scope) -> str:
    """The path the routes know: uvicorn puts ``--root-path`` in front of the path it received."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


class Guard:
    def __init__(self, app, config: ServeConfig, metrics: Metrics, envelope: Callable,
                 routes: Callable[[], set[str]]) -> None:
        self.app, self.config, self.metrics, self.envelope, self.routes = app, config, metrics, envelope, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path = time.perf_counter(), route_path(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:128] or uuid.uuid4().hex
        status = {"code": 500}

        async def tracked_send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self._guarded(scope, receive, tracked_send, headers)
        except Exception as err:  # noqa: BLE001 - last line of defence: a 500 in the route's envelope
            logger.exception("unexpected error on %s (request %s)", path, request_id)
            await self.envelope(path, 500, f"internal error: {type(err).__name__}", "Backend")(scope, receive,
                                                                                                tracked_send)
        finally:
            route = path if path in self.routes() else UNMATCHED
            seconds = time.perf_counter() - started
            self.metrics.observe_request(route, status["code"], seconds)
            access_log.info("%s %s %d %.1fms %s", scope["method"], route, status["code"], 1000 * seconds,
                            request_id, extra={"method": scope["method"], "route": route, "status": status["code"],
                                               "latency_ms": round(1000 * seconds, 1), "request_id": request_id})

    async def _guarded(self, scope, receive, send, headers: dict) -> None:
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["method"] == "POST" and "content-length" not in headers:
            receive, refusal = await self._buffered(route_path(scope), receive)
        await (refusal or self.app)(scope, receive, send)

    def _refusal(self, scope, headers: dict):
        path, key = route_path(scope), self.config.api_key
        open_paths = OPEN_PATHS + (("/metrics",) if self.config.metrics_open else ())
        if key and path not in open_paths and not path.startswith(OPEN_PREFIXES):
            given = headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), key.encode()):
                return self.envelope(path, 401, "missing or wrong API key", "Unauthorized",
                                     {"WWW-Authenticate": 'Bearer realm="headrank"'})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.config.max_body_bytes):
            return self.envelope(path, 413, f"request body over {self.config.max_body_bytes} bytes", "Validation")
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["method"] == "POST" and kind != "application/json" and not kind.endswith("+json"):
            return self.envelope(path, 415, "the body must be JSON sent with 'Content-Type: application/json' "
                                            f"(got {kind or 'no Content-Type'!r})", "Validation")
        return None

    async def _buffered(self, path: str, receive):
        """A body without a declared length, read up to the limit; replayed to the app, then the real receive."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.config.max_body_bytes:
                return receive, self.envelope(path, 413, f"request body over {self.config.max_body_bytes} bytes",
                                              "Validation")
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return replayed, None
