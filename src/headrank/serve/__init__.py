"""``headrank serve``: an HTTP rerank service that Cohere, Jina / vLLM and TEI clients can call unchanged.

The layout: ``config`` (what runs, limits), ``schemas`` (request bodies, errors), ``queue`` (the one bounded
queue in front of the model), ``service`` (the served ranker, preloaded presets, the queue, metrics),
``middleware`` (key, body checks, request id, access log, metrics), ``routes/`` (one router per API family:
``cohere``, ``tei``, ``explain``, ``ops``). Routes:

- ``POST /v1/rerank`` and ``POST /v2/rerank``: the Cohere / Jina / vLLM shape, one handler for the union of
  their fields, plus ``fuse_first_stage`` (this request's fusion weight with the input order; 0: off).
  ``relevance_score`` is the ranking score (the fused one when fusion is on) min-max normalized within the
  request (1 = best, 0 = worst, 0.5 when all are equal, 0 for an empty passage); ``raw_scores: true`` returns
  the score itself. ``usage.prompt_tokens`` counts the tokens of the prompts that ran; ``meta.headrank`` the
  settings used.
- ``POST /rerank``: Hugging Face TEI's shape (``query``, ``texts``) -> ``[{index, score, text?}]``.
- ``GET /health`` (503 until the model is loaded, after a failed load and while shutting down), ``GET /info``,
  ``GET /metrics`` (Prometheus; route labels are route templates), ``GET /v1/models``, ``GET /docs`` and
  ``GET /redoc`` (assets served locally).
- ``GET /``: the playground page, ``GET /v1/examples`` (its typed example and, when the benchmark data is on the
  server, a real BM25 list) and ``POST /v1/explain`` behind it; presets other than the served model must be
  named at start (``--preload``); others answer 404 with the list.

Every piece of model work waits in one bounded queue (429 with ``Retry-After`` when full); a worker takes up to
``max_batch_lists`` requests that arrive within ``batch_wait_ms`` and ranks those with equal options in one
padded forward. A request whose client went away or timed out before its turn is dropped. A request's scores
are the same alone or batched up to float summation order (about 1e-8, the ranking unchanged).

Shutdown (SIGTERM or Ctrl-C): the server stops accepting connections (new ones are refused), answers the
requests already received (up to ``--timeout``), then exits; ``/health`` says 503 meanwhile on open
connections. Both are tested (``tests/test_serve.py``).

Errors use each route's own envelope: ``{"message": ...}`` on the Cohere / Jina routes, ``{"error": ...,
"error_type": ...}`` on TEI's. Bad input is a 4xx, never a 500.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import fastapi_offline  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised by the CLI's message test
    raise ImportError(f"headrank serve needs the '{err.name}' package (part of the 'serve' extra): "
                      "pip install 'headrank[serve]'") from err

from headrank.serve.app import create_app, serve
from headrank.serve.config import ServeConfig
from headrank.serve.schemas import normalized_scores

__all__ = ["ServeConfig", "create_app", "normalized_scores", "serve"]
