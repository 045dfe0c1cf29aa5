"""Prometheus metrics of the service. Route labels are route templates (an unknown path counts as
``"unmatched"``), so the number of series stays bounded whatever clients send."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("headrank_requests", "Requests by route template and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("headrank_request_seconds", "End-to-end request latency by route and status",
                                 ["route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_size = Gauge("headrank_queue_size", "Requests waiting for the model", registry=r)
        self.queue_time = Histogram("headrank_queue_seconds", "Time a request waited in the queue", registry=r)
        self.inference_time = Histogram("headrank_inference_seconds", "Time of one batch of model work", registry=r)
        self.batch_size = Histogram("headrank_batch_lists", "Requests per batch of model work",
                                    buckets=(1, 2, 4, 8, 16, 32), registry=r)
        self.tokens = Counter("headrank_prompt_tokens", "Prompt tokens processed", registry=r)
        self.dropped = Counter("headrank_dropped", "Requests dropped before their turn (client gone, timeout)",
                               registry=r)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)
