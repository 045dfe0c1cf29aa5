"""The service object: the served ranker (and preloaded presets), the queue in front of them, the metrics.

Routes call ``Service.rank`` and ``Service.explain``; both go through the one queue, with the same limits,
timeout and cancellation. Models load in a background thread at start (``/health`` is 503 until then),
never while a request waits on them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable, Sequence

from fastapi.concurrency import run_in_threadpool

from headrank.serve.config import ServeConfig
from headrank.serve.metrics import Metrics
from headrank.serve.queue import BatchQueue
from headrank.serve.schemas import ServiceError

logger = logging.getLogger(__name__)


class Service:
    def __init__(self, config: ServeConfig, ranker=None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.ranker = ranker
        self.extra: dict = {}  # preloaded presets the playground may explain with
        self.load_error: str | None = None
        self.shutting_down = False
        self.draining = False  # SIGTERM received: /health is 503, requests are still served until the drain ends
        self.loaded_at: float | None = time.time() if ranker is not None else None
        self.queue: BatchQueue | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the queue's worker (inside the event loop) and, unless given a ranker, the loading thread."""
        self.queue = BatchQueue(self._run_group, self.config.max_queue, self.config.max_batch_lists,
                                self.config.batch_wait_ms, self.metrics)
        self.queue.start()
        if self.ranker is None:
            threading.Thread(target=self._load, daemon=True).start()
        elif self.config.preload and not self.extra:
            threading.Thread(target=self._load_extra, daemon=True).start()

    def load_now(self) -> None:
        """Load the model in this thread (a Ray Serve replica is ready only with its model); raise on failure."""
        self._load()
        if self.ranker is None:
            raise RuntimeError(f"the model failed to load: {self.load_error}")

    async def stop(self) -> None:
        self.shutting_down = True
        if self.queue is not None:
            await self.queue.stop()

    def _load(self) -> None:
        from headrank.rerankers import load_attention_reranker

        c = self.config
        try:
            ranker = load_attention_reranker(c.model, c.method, c.heads, device=c.device, dtype=c.dtype,
                                             quantize=c.quantize)
            # On a GPU, every (batch size, length) bucket a request can reach runs once before /health says ready.
            longest = c.max_documents * (ranker.prompt_settings.max_passage_tokens + 8) + 400
            started = time.perf_counter()
            warmed = ranker.warm_up(longest, max_batch=c.max_batch_lists, seconds=c.warm_up_s)
            if warmed:
                logger.info("warmed %d (batch size, length) shapes in %.1f s", warmed, time.perf_counter() - started)
            self.ranker, self.loaded_at = ranker, time.time()
            logger.info("loaded %r", self.ranker)
        except Exception as err:  # noqa: BLE001 - reported by /health and every request
            self.load_error = f"{type(err).__name__}: {err}"
            logger.error("could not load the model: %s", self.load_error)
            return
        self._load_extra()

    def _load_extra(self) -> None:
        from headrank.rerankers import load_reranker

        for name in self.config.preload:
            if name == self.served_name():
                continue
            try:
                self.extra[name] = load_reranker("headrank", name, device=self.config.device, dtype=self.config.dtype,
                                                 quantize=self.config.quantize)
                logger.info("preloaded %s for the playground", name)
            except Exception as err:  # noqa: BLE001 - that preset is then unavailable, the service runs on
                logger.error("could not preload %s: %s: %s", name, type(err).__name__, err)

    # ------------------------------------------------------------------ state

    def served_name(self) -> str:
        r = self.ranker
        return (r.preset or r.model.name) if r is not None else self.config.model

    def models(self) -> list[str]:
        """What this server explains with: the served model first, then the preloaded presets."""
        return [self.served_name(), *self.extra]

    def ready(self) -> None:
        if self.shutting_down:
            raise ServiceError(503, "the server is shutting down", "Unhealthy")
        if self.ranker is None:
            message = f"the model failed to load: {self.load_error}" if self.load_error else "the model is loading"
            raise ServiceError(503, message, "Unhealthy", {"Retry-After": "5"})

    def ranker_for(self, name: str | None):
        """The served ranker (``name`` empty or its own) or a preloaded preset; 404 with the list otherwise."""
        if name in (None, "", self.served_name()):
            return self.ranker
        if name in self.extra:
            return self.extra[name]
        raise ServiceError(404, f"unknown model {name!r}; this server explains with {', '.join(self.models())} "
                                "(other presets: start it with --preload NAME)", "NotFound")

    def check_input(self, query: str, texts: Sequence[str]) -> None:
        c = self.config
        if not query.strip():
            raise ServiceError(400, "query is empty")
        if not texts:
            raise ServiceError(400, "documents is empty")
        if len(texts) > c.max_documents:
            raise ServiceError(422, f"{len(texts)} documents exceed the limit of {c.max_documents}")
        if len(query) > c.max_query_chars:
            raise ServiceError(422, f"the query has {len(query)} characters; the limit is {c.max_query_chars}")
        for i, text in enumerate(texts):
            if len(text) > c.max_document_chars:
                raise ServiceError(422, f"document {i} has {len(text)} characters; the limit is "
                                        f"{c.max_document_chars}")
        for what, text in [("query", query), *((f"document {i}", t) for i, t in enumerate(texts))]:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ServiceError(400, f"{what} is not valid Unicode text") from None

    def check_fits(self, texts: Sequence[str]) -> None:
        """413 for the first document longer than the passage budget (TEI's answer when truncation is off)."""
        from headrank.engine.prompt import normalize_text

        limit = self.ranker.prompt_settings.max_passage_tokens
        for i, text in enumerate(texts):
            if self.ranker.builder.cut(normalize_text(text), limit)[1]:
                raise ServiceError(413, f"Input validation error: document {i} is longer than the model's passage "
                                        f"budget of {limit} tokens and truncate is false", "Validation")

    def fusion(self, requested: float | None) -> float | None:
        """A request's fusion weight: its own, else the server's default, else None (the model's setting)."""
        return requested if requested is not None else self.config.fuse_first_stage

    def valve(self, requested: bool | None) -> bool | None:
        """A request's safety valve switch: its own, else the server's default, else None (the model's)."""
        return requested if requested is not None else self.config.safety_valve

    # ------------------------------------------------------------------ work through the queue

    async def rank(self, request, query: str, texts: list[str], max_tokens: int | None = None,
                   fuse: float | None = None, valve: bool | None = None, truncate: bool = True,
                   direction: str = "right"):
        """A ``Ranking`` (usage and settings included) for one request, through the queue. ``max_tokens``: cut
        each document to that many tokens (from the end with ``direction`` "left"); ``truncate`` False: a
        document over the passage budget is a 413 (TEI), not cut."""
        self.ready()
        self.check_input(query, texts)
        if not truncate:
            await run_in_threadpool(self.check_fits, texts)
        if direction == "left" and max_tokens is None:
            max_tokens = self.ranker.prompt_settings.max_passage_tokens
        key = ("rank", "", self.fusion(fuse), self.valve(valve), (max_tokens, direction) if max_tokens else None)
        ranking = await self._submit(request, key, (query, texts))
        self.metrics.tokens.inc(ranking.prompt_tokens)
        return ranking

    async def explain(self, request, model: str | None, query: str, texts: list[str], fuse: float | None = None,
                      valve: bool | None = None):
        """(ranker, explanations) for one request, through the same queue as rerank."""
        self.ready()
        ranker = self.ranker_for(model)
        self.check_input(query, texts)
        name = "" if ranker is self.ranker else model
        return ranker, await self._submit(request, ("explain", name, self.fusion(fuse), self.valve(valve), None), (query, texts))

    async def _submit(self, request, key: Hashable, payload):
        assert self.queue is not None
        future = self.queue.submit(key, payload)
        deadline = time.perf_counter() + self.config.request_timeout_s
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=min(0.2, max(0.0, deadline - time.perf_counter())))
                if future.done():
                    break
                if time.perf_counter() >= deadline:
                    raise ServiceError(504, f"the request took longer than {self.config.request_timeout_s:g} s",
                                       "Timeout")
                if await request.is_disconnected():  # its job is dropped if it has not started
                    raise ServiceError(499, "the client closed the connection", "Cancelled")
            return future.result()
        except (ValueError, TypeError) as err:
            raise ServiceError(400, str(err)) from None
        finally:
            if not future.done():
                future.cancel()

    def _run_group(self, key: Hashable, payloads: Sequence) -> list:
        """Runs in the queue's worker thread: one batched rank, or explanations one by one."""
        kind, name, fuse, valve, cut = key
        ranker = self.ranker if not name else self.extra[name]
        if kind == "explain":
            return [ranker.explain(q, texts, fuse_first_stage=fuse, safety_valve=valve) for q, texts in payloads]
        queries = [q for q, _ in payloads]
        lists = [[_cut(ranker, t, *cut) for t in texts] if cut else texts for _, texts in payloads]
        return ranker.rank_batch(queries, lists, batch_size=self.config.max_batch_lists, fuse_first_stage=fuse,
                                 safety_valve=valve)


def _cut(ranker, text: str, limit: int, direction: str = "right") -> str:
    """A document cut to ``limit`` tokens (Cohere's ``max_tokens_per_doc``), as the prompt builder cuts; a
    limit at or above the ranker's own passage budget changes nothing (the builder cuts there anyway).
    ``direction`` "left" keeps the end of the document (TEI's ``truncation_direction``)."""
    from headrank.engine.prompt import normalize_text

    budget = ranker.prompt_settings.max_passage_tokens
    if direction == "left":
        return ranker.builder.cut_left(normalize_text(text), min(limit, budget))[0]
    if limit >= budget:
        return text
    return ranker.builder.cut(normalize_text(text), limit)[0]
