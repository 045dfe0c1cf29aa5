"""What ``headrank serve`` runs and the limits it enforces."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from headrank.defaults import DEFAULT_PRESET
from headrank.engine.rule import fusion_weight

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass
class ServeConfig:
    """The served model, per-request limits, batching, logging. ``preload``: other shipped presets the
    playground may explain with, loaded at start (others are refused with the list); ``fuse_first_stage``:
    the server's default fusion weight with the input order (None: the model's own setting, 0: off)."""

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
    warm_up_s: float = 60.0  # on a GPU: how long the start may spend running kernel shapes before /health is ready
    preload: tuple[str, ...] = ()
    fuse_first_stage: float | None = None
    safety_valve: bool | None = None  # None: the model's setting
    log_level: str = "info"
    json_logs: bool = False
    quantize: str | None = None  # None: the model's CPU setting; "none": float; "int8" (headrank.engine.quantize)
    drain_seconds: float = 0.0  # after SIGTERM: /health answers 503 this long before the listener closes
    metrics_open: bool = False  # /metrics without the API key (for a scraper inside the cluster)
    root_path: str = ""  # the path prefix a reverse proxy serves this under (it strips it before forwarding)

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_chars", "max_query_chars", "max_body_bytes", "max_queue",
                     "max_batch_lists"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.batch_wait_ms < 0 or self.request_timeout_s <= 0 or not self.warm_up_s >= 0:
            raise ValueError("batch_wait_ms and warm_up_s must be >= 0 and request_timeout_s > 0")
        fusion_weight(None, self.fuse_first_stage)  # the one rule for a fusion weight; 0 here means "no fusion"
        if not (isinstance(self.drain_seconds, (int, float)) and math.isfinite(self.drain_seconds)
                and self.drain_seconds >= 0):
            raise ValueError(f"drain_seconds must be >= 0, got {self.drain_seconds!r}")
        root = self.root_path
        if root and (not root.startswith("/") or root.endswith("/") or any(c in root for c in "?#% ")):
            raise ValueError(f"root_path must look like /prefix (a leading slash, no trailing slash, no query), "
                             f"got {root!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        self.preload = tuple(self.preload)
        from headrank.engine.quantize import check_quantize

        check_quantize(self.quantize)

    def limits(self) -> dict:
        return {k: getattr(self, k) for k in ("max_documents", "max_document_chars", "max_query_chars",
                                              "max_body_bytes", "max_queue", "max_batch_lists", "batch_wait_ms",
                                              "request_timeout_s")}
