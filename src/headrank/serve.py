"""``headrank serve``: an HTTP rerank service that Cohere, Jina / vLLM and TEI clients can call unchanged.

Routes (FastAPI; OpenAPI at ``/docs``):

- ``POST /v1/rerank`` and ``POST /v2/rerank``: the Cohere / Jina / vLLM shape, one handler for the union of
  their fields. ``relevance_score`` is the listwise score min-max normalized within the request (1 = the
  best passage of this request, 0 = the worst, 0.5 when all are equal, 0 for an empty passage);
  ``raw_scores: true`` returns the raw listwise score instead (``null`` for an empty passage).
- ``POST /rerank``: Hugging Face TEI's shape (``query``, ``texts``) -> ``[{index, score, text?}]``.
- ``GET /health`` (503 until the model is loaded and while shutting down), ``GET /info``, ``GET /metrics``
  (Prometheus), ``GET /v1/models``.
- ``GET /``: the playground page (no build step, no CDN) and ``POST /v1/explain`` behind it: the ranking with
  per-token contributions (``headrank.explain``); other shipped presets load on first use there.

One model instance serves every request. Requests wait in a bounded queue (429 with ``Retry-After`` when
full); a worker takes up to ``max_batch_lists`` of them that arrive within ``batch_wait_ms`` and ranks them
in one padded forward (``HeadRanker.rank_batch``). A request whose client went away or timed out before its
turn is dropped. A request's scores are the same alone or batched up to float summation order (a padded
batch adds terms in another order: differences of about 1e-8, the ranking unchanged).

Errors use each route's own envelope: ``{"message": ...}`` on the Cohere / Jina routes, ``{"error": ...,
"error_type": ...}`` on TEI's. Bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as err:  # pragma: no cover - exercised by the CLI's message test
    raise ImportError("headrank serve needs the 'serve' extra: pip install 'headrank[serve]'") from err

from headrank.presets import DEFAULT_PRESET

logger = logging.getLogger(__name__)
TEI_ROUTES = ("/rerank",)


@dataclass
class ServeConfig:
    """What ``headrank serve`` runs and the limits it enforces."""

    model: str = DEFAULT_PRESET
    method: str | None = None
    heads: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    max_documents: int = 100
    max_document_chars: int = 20_000
    max_query_chars: int = 2_000
    max_body_bytes: int = 8 * 1024 * 1024
    max_queue: int = 64
    max_batch_lists: int = 8
    batch_wait_ms: float = 5.0
    request_timeout_s: float = 120.0
    playground_presets: bool = True  # /v1/explain may load other shipped presets on first use

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_chars", "max_query_chars", "max_body_bytes", "max_queue",
                     "max_batch_lists"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.batch_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("batch_wait_ms must be >= 0 and request_timeout_s > 0")

    def limits(self) -> dict:
        return {k: getattr(self, k) for k in ("max_documents", "max_document_chars", "max_query_chars",
                                              "max_body_bytes", "max_queue", "max_batch_lists", "batch_wait_ms",
                                              "request_timeout_s")}


# ------------------------------------------------------------------------------------------------ schemas


class Document(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class RerankRequest(BaseModel):
    """Cohere v1/v2, Jina and vLLM rerank requests (the union of their fields)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    query: str
    documents: list[str | Document]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    raw_scores: bool = False


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    query: str
    documents: list[str | Document]


class TEIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = True


class ServiceError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "Validation", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = status, message, error_type, headers or {}


# ------------------------------------------------------------------------------------------------ scores


def normalized_scores(scores: Sequence[float]) -> list[float]:
    """Listwise scores to [0, 1] within one request: min-max over the non-empty passages; empty ones 0."""
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [0.0] * len(scores)
    low, high = min(finite), max(finite)
    if high == low:
        return [0.5 if math.isfinite(s) else 0.0 for s in scores]
    return [(s - low) / (high - low) if math.isfinite(s) else 0.0 for s in scores]


# ------------------------------------------------------------------------------------------------ batching


@dataclass
class _Job:
    query: str
    docs: list[str]
    future: asyncio.Future
    enqueued: float


class BatchQueue:
    """Bounded queue in front of one model; one worker batches jobs that arrive within a short window."""

    def __init__(self, rank_batch, max_queue: int, max_batch: int, wait_ms: float, metrics: Metrics) -> None:
        self._rank_batch = rank_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._max_batch, self._wait = max_batch, wait_ms / 1000
        self._metrics = metrics
        self._worker: asyncio.Task | None = None
        self.in_flight = 0

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Let queued and running jobs finish, then stop the worker."""
        await self._queue.join()
        if self._worker:
            self._worker.cancel()

    def submit(self, query: str, docs: list[str]) -> asyncio.Future:
        job = _Job(query, docs, asyncio.get_running_loop().create_future(), time.perf_counter())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise ServiceError(429, "the server is busy (queue full); retry shortly", "Overloaded",
                               {"Retry-After": "1"}) from None
        self._metrics.queue_size.set(self._queue.qsize())
        return job.future

    def _rank_each(self, jobs: list[_Job]) -> list:
        """One batched forward; if it fails, each job alone, so one bad request cannot fail its neighbours."""
        try:
            return self._rank_batch([j.query for j in jobs], [j.docs for j in jobs])
        except Exception as err:  # noqa: BLE001 - retried one by one below
            if len(jobs) == 1:
                return [err]
            return [self._error(j) for j in jobs]

    def _error(self, job: _Job):
        try:
            return self._rank_batch([job.query], [job.docs])[0]
        except Exception as err:  # noqa: BLE001 - handed to the waiting request
            return err

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            deadline = time.perf_counter() + self._wait
            while len(jobs) < self._max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            self._metrics.queue_size.set(self._queue.qsize())
            live = [j for j in jobs if not j.future.done()]  # a timed-out or disconnected client is dropped
            self._metrics.dropped.inc(len(jobs) - len(live))
            if live:
                now = time.perf_counter()
                for job in live:
                    self._metrics.queue_time.observe(now - job.enqueued)
                self.in_flight = len(live)
                started = time.perf_counter()
                results = await asyncio.to_thread(self._rank_each, live)
                self._metrics.inference_time.observe(time.perf_counter() - started)
                self._metrics.batch_size.observe(len(live))
                self.in_flight = 0
                for job, result in zip(live, results):
                    if not job.future.done():
                        if isinstance(result, Exception):
                            job.future.set_exception(result)
                        else:
                            job.future.set_result(result)
            for _ in jobs:
                self._queue.task_done()


# ------------------------------------------------------------------------------------------------ metrics


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("headrank_requests", "Requests by route and status", ["route", "status"], registry=r)
        self.queue_size = Gauge("headrank_queue_size", "Requests waiting for the model", registry=r)
        self.queue_time = Histogram("headrank_queue_seconds", "Time a request waited in the queue", registry=r)
        self.inference_time = Histogram("headrank_inference_seconds", "Time of one batched forward", registry=r)
        self.batch_size = Histogram("headrank_batch_lists", "Requests per batched forward",
                                    buckets=(1, 2, 4, 8, 16, 32), registry=r)
        self.tokens = Counter("headrank_prompt_tokens", "Prompt tokens processed", registry=r)
        self.dropped = Counter("headrank_dropped", "Requests dropped before their turn (client gone, timeout)",
                               registry=r)


# ------------------------------------------------------------------------------------------------ app


class _State:
    def __init__(self) -> None:
        self.ranker = None
        self.model_lock = threading.Lock()  # one forward at a time on this machine's cores
        self.extra_rankers: dict = {}
        self.queue: BatchQueue | None = None
        self.load_error: str | None = None
        self.shutting_down = False
        self.loaded_at: float | None = None


def create_app(config: ServeConfig, ranker=None) -> FastAPI:
    """The service. ``ranker`` (a loaded HeadRanker) skips loading; otherwise the model loads in the background
    after start-up, and ``/health`` answers 503 until it is ready."""
    from contextlib import asynccontextmanager

    from headrank import __version__

    state, metrics = _State(), Metrics()

    def load() -> None:
        from headrank.ranker import HeadRanker

        try:
            state.ranker = HeadRanker.from_pretrained(config.model, heads=config.heads, method=config.method,
                                                      device=config.device, dtype=config.dtype)
            state.loaded_at = time.time()
            logger.info("loaded %r", state.ranker)
        except Exception as err:  # noqa: BLE001 - reported by /health and every request
            state.load_error = f"{type(err).__name__}: {err}"
            logger.error("could not load the model: %s", state.load_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if ranker is not None:
            state.ranker, state.loaded_at = ranker, time.time()
        else:
            threading.Thread(target=load, daemon=True).start()
        def rank_batch(queries, docs):
            with state.model_lock:
                return state.ranker.rank_batch(queries, docs, batch_size=config.max_batch_lists)

        state.queue = BatchQueue(rank_batch,
                                 config.max_queue, config.max_batch_lists, config.batch_wait_ms, metrics)
        state.queue.start()
        yield
        state.shutting_down = True
        await state.queue.stop()

    app = FastAPI(title="HeadRank", version=__version__, lifespan=lifespan,
                  description="Decoding-free passage reranking from a decoder LLM's attention heads.")
    app.state.headrank = state
    app.state.metrics = metrics

    def envelope(path: str, status: int, message: str, error_type: str, headers: dict | None = None) -> JSONResponse:
        body = {"error": message, "error_type": error_type} if path in TEI_ROUTES else {"message": message}
        return JSONResponse(body, status_code=status, headers=headers)

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

    app.add_middleware(_Guard, config=config, metrics=metrics, envelope=envelope)

    def ready() -> None:
        if state.shutting_down:
            raise ServiceError(503, "the server is shutting down", "Unhealthy")
        if state.ranker is None:
            message = f"the model failed to load: {state.load_error}" if state.load_error else "the model is loading"
            raise ServiceError(503, message, "Unhealthy", {"Retry-After": "5"})

    def check_input(query: str, texts: list[str]) -> None:
        if not query.strip():
            raise ServiceError(400, "query is empty")
        if not texts:
            raise ServiceError(400, "documents is empty")
        if len(texts) > config.max_documents:
            raise ServiceError(422, f"{len(texts)} documents exceed the limit of {config.max_documents}")
        if len(query) > config.max_query_chars:
            raise ServiceError(422, f"the query has {len(query)} characters; the limit is {config.max_query_chars}")
        for i, text in enumerate(texts):
            if len(text) > config.max_document_chars:
                raise ServiceError(422, f"document {i} has {len(text)} characters; the limit is "
                                        f"{config.max_document_chars}")
        for what, text in [("query", query), *((f"document {i}", t) for i, t in enumerate(texts))]:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ServiceError(400, f"{what} is not valid Unicode text") from None

    async def rank(request: Request, query: str, texts: list[str], max_tokens: int | None) -> tuple[list, int]:
        ready()
        check_input(query, texts)
        if max_tokens:
            texts = [_cut_tokens(state.ranker, t, max_tokens) for t in texts]
        future = state.queue.submit(query, texts)
        deadline = time.perf_counter() + config.request_timeout_s
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=min(0.2, max(0.0, deadline - time.perf_counter())))
                if future.done():
                    break
                if time.perf_counter() >= deadline:
                    raise ServiceError(504, f"the request took longer than {config.request_timeout_s:g} s", "Timeout")
                if await request.is_disconnected():  # its job is dropped if it has not started
                    raise ServiceError(499, "the client closed the connection", "Cancelled")
            results = future.result()
        except (ValueError, TypeError) as err:
            raise ServiceError(400, str(err)) from None
        finally:
            if not future.done():
                future.cancel()
        tokens = _prompt_tokens(state.ranker, query, texts)
        metrics.tokens.inc(tokens)
        return results, tokens

    def served_name() -> str:
        r = state.ranker
        return (r.preset or r.model.name) if r is not None else config.model

    @app.post("/v1/rerank")
    @app.post("/v2/rerank")
    async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        started = time.perf_counter()
        results, tokens = await rank(request, body.query, texts, body.max_tokens_per_doc)
        scores = [0.0] * len(texts)
        for r in results:
            scores[r.corpus_id] = r.score
        shown = scores if body.raw_scores else normalized_scores(scores)
        rows = []
        for r in results[: body.top_n or None]:
            value = shown[r.corpus_id]
            row: dict[str, Any] = {"index": r.corpus_id,
                                   "relevance_score": value if math.isfinite(value) else None}
            if body.return_documents:
                doc = body.documents[r.corpus_id]
                row["document"] = {"text": doc} if isinstance(doc, str) else doc.model_dump()
            rows.append(row)
        meta = {"api_version": {"version": "2" if request.url.path.startswith("/v2") else "1"},
                "billed_units": {"search_units": 1},
                "headrank": {"preset": state.ranker.preset, "method": state.ranker.method,
                             "inference": asdict(state.ranker.inference_settings),
                             "latency_ms": round(1000 * (time.perf_counter() - started), 1),
                             "scores": "raw listwise" if body.raw_scores else "min-max within the request"}}
        return JSONResponse({"id": str(uuid.uuid4()), "model": served_name(), "results": rows,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "meta": meta})

    @app.post("/rerank")
    async def tei_rerank(body: TEIRequest, request: Request) -> JSONResponse:
        results, _ = await rank(request, body.query, body.texts, None)
        scores = [0.0] * len(body.texts)
        for r in results:
            scores[r.corpus_id] = r.score
        shown = scores if body.raw_scores else normalized_scores(scores)
        rows = []
        for r in results:
            value = shown[r.corpus_id]
            row: dict[str, Any] = {"index": r.corpus_id, "score": value if math.isfinite(value) else None}
            if body.return_text:
                row["text"] = body.texts[r.corpus_id]
            rows.append(row)
        return JSONResponse(rows)

    @app.get("/", include_in_schema=False)
    async def playground() -> Response:
        from importlib.resources import files

        page = files("headrank").joinpath("web/playground.html").read_text(encoding="utf-8")
        return Response(page, media_type="text/html; charset=utf-8")

    def explainer(name: str | None):
        from headrank.presets import available_presets
        from headrank.ranker import HeadRanker

        if name in (None, "", served_name()):
            return state.ranker
        if not config.playground_presets or name not in available_presets():
            raise ServiceError(422, f"unknown model {name!r}; this server explains {served_name()!r}"
                                    + (f" and the presets {', '.join(available_presets())}"
                                       if config.playground_presets else ""))
        if name not in state.extra_rankers:
            state.extra_rankers[name] = HeadRanker.from_pretrained(name, device=config.device, dtype=config.dtype)
        return state.extra_rankers[name]

    @app.post("/v1/explain")
    async def explain_route(body: ExplainRequest) -> JSONResponse:
        ready()
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        check_input(body.query, texts)
        started = time.perf_counter()

        def work():
            with state.model_lock:
                ranker = explainer(body.model)
                return ranker, ranker.explain(body.query, texts)

        try:
            ranker, explanations = await asyncio.wait_for(asyncio.to_thread(work), config.request_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(504, f"the request took longer than {config.request_timeout_s:g} s", "Timeout") from None
        except (ValueError, TypeError) as err:
            raise ServiceError(400, str(err)) from None
        results = [{"index": e.corpus_id, **{k: v for k, v in e.to_dict().items() if k != "corpus_id"}}
                   for e in explanations]
        return JSONResponse({"model": ranker.preset or ranker.model.name, "method": ranker.method,
                             "inference": asdict(ranker.inference_settings),
                             "latency_ms": round(1000 * (time.perf_counter() - started), 1), "results": results})

    @app.get("/health")
    async def health() -> JSONResponse:
        ready()
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> JSONResponse:
        r = state.ranker
        return JSONResponse({
            "model": served_name(), "preset": r.preset if r else None, "method": r.method if r else None,
            "heads": [list(h) for h in r.heads.heads] if r and r.method != "icr" else None,
            "inference": asdict(r.inference_settings) if r else None, "ready": r is not None,
            "limits": config.limits(), "version": __version__,
            "presets": _presets_for(served_name(), config.playground_presets),
            "scores": "relevance_score: min-max within a request (1 best, 0 worst); raw_scores: listwise score",
        })

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        created = int(state.loaded_at or time.time())
        return JSONResponse({"object": "list", "data": [{"id": served_name(), "object": "model",
                                                          "created": created, "owned_by": "headrank"}]})

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_size.set(state.queue._queue.qsize() if state.queue else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Guard:
    """Pure ASGI middleware (it leaves the client's disconnect visible to the routes): API key, body size,
    request counts by route and status."""

    def __init__(self, app, config: ServeConfig, metrics: Metrics, envelope) -> None:
        self.app, self.config, self.metrics, self.envelope = app, config, metrics, envelope

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        status = {"code": 500}

        async def counted_send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is None and scope["method"] == "POST" and b"content-length" not in dict(scope["headers"]):
                receive, refusal = await self._buffered(path, receive)
            if refusal is not None:
                await refusal(scope, receive, counted_send)
            else:
                await self.app(scope, receive, counted_send)
        except Exception as err:  # noqa: BLE001 - last line of defence: a 500 in the route's envelope
            logger.exception("unexpected error on %s", path)
            await self.envelope(path, 500, f"internal error: {type(err).__name__}", "Backend")(scope, receive,
                                                                                                counted_send)
        finally:
            self.metrics.requests.labels(path, str(status["code"])).inc()

    def _refusal(self, scope):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path, key = scope["path"], self.config.api_key
        if key and path != "/health":
            given = headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), key.encode()):
                return self.envelope(path, 401, "missing or wrong API key", "Unauthorized")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.config.max_body_bytes):
            return self.envelope(path, 413, f"request body over {self.config.max_body_bytes} bytes", "Validation")
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


def _presets_for(served: str, allow: bool) -> list[str]:
    from headrank.presets import available_presets

    return [served] + ([p for p in available_presets() if p != served] if allow else [])


def _cut_tokens(ranker, text: str, limit: int) -> str:
    """A document cut to ``limit`` tokens (the per-request ``max_tokens_per_doc``), as the prompt builder cuts."""
    from headrank.prompt import normalize_text

    return ranker.builder._cut(normalize_text(text), limit)[0]


def _prompt_tokens(ranker, query: str, texts: list[str]) -> int:
    """Tokens of the listwise prompt(s) a request cost (both orders count twice)."""
    kept = [t for t in texts if t.strip()]
    if not kept:
        return 0
    try:
        tokens = len(ranker.builder.build(query, kept))
    except ValueError:
        return 0
    return tokens * (2 if ranker.both_orders else 1)


def serve(config: ServeConfig) -> None:
    """Run the service with uvicorn until interrupted; in-flight requests finish on shutdown."""
    import uvicorn

    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning",
                timeout_graceful_shutdown=int(config.request_timeout_s))
