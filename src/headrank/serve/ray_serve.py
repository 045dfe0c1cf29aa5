"""``headrank serve --ray``: the same FastAPI app (every route, the key, limits, metrics, the playground) as a Ray
Serve deployment, one model per replica, behind Ray Serve's own proxy and load balancing.

Each replica loads its model before it reports ready, so Ray Serve sends it nothing until it can answer. Replica
count is fixed (``replicas``) or autoscaled (``min_replicas`` .. ``max_replicas`` around
``target_ongoing_requests`` per replica); ``replica_cpus`` / ``replica_gpus`` reserve resources per replica (a GPU
fraction such as 0.5 packs two replicas on one GPU). ``app_builder`` is the import path of
``deploy/ray-serve.yaml`` for ``serve run`` / ``serve deploy`` on a running cluster.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import asdict, dataclass, fields

from headrank.serve.config import ServeConfig

logger = logging.getLogger(__name__)
DEPLOYMENT = "HeadRank"
APPLICATION = "headrank"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class RayOptions:
    """How the service scales on Ray Serve (see the module docstring); ``address``: join a running Ray cluster
    (e.g. ``auto``), else a local Ray instance on this machine is started and stopped with the service."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    address: str | None = None

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("autoscaling needs both min_replicas and max_replicas")
        if self.autoscaling and not (0 <= self.min_replicas <= self.max_replicas and self.max_replicas >= 1):
            raise ValueError(f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got "
                             f"{self.min_replicas}..{self.max_replicas}")
        if self.target_ongoing_requests <= 0 or self.replica_cpus < 0 or self.replica_gpus < 0:
            raise ValueError("target_ongoing_requests must be > 0, replica_cpus and replica_gpus >= 0")

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None

    def deployment_options(self, config: ServeConfig) -> dict:
        """Ray Serve deployment options: replicas or autoscaling, resources, in-flight limit, graceful shutdown."""
        options = {"name": DEPLOYMENT,
                   "ray_actor_options": {"num_cpus": self.replica_cpus, "num_gpus": self.replica_gpus},
                   # a replica's own queue answers 429 past max_queue; Ray Serve holds no more than that
                   "max_ongoing_requests": config.max_queue + config.max_batch_lists,
                   "graceful_shutdown_timeout_s": config.request_timeout_s,
                   "max_constructor_retry_count": 1}  # a model that fails to load fails the start, once
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "initial_replicas": min(max(self.replicas, self.min_replicas), self.max_replicas),
                "target_ongoing_requests": self.target_ongoing_requests}
        else:
            options["num_replicas"] = self.replicas
        return options


def replica_app(config: ServeConfig):
    """On a replica: the model loads now (the replica is ready only with it), then the app around it."""
    from headrank.serve.app import configure_logging, create_app

    configure_logging(config.log_level, config.json_logs)
    app = create_app(config)
    app.state.service.load_now()
    return app


def application(config: ServeConfig, options: RayOptions):
    """The bound Ray Serve application: ``serve.run`` it, or return it from a config file's import path."""
    from ray import serve

    def build():  # runs on each replica (Ray Serve's ASGI builder)
        return replica_app(config)

    return serve.deployment(serve.ingress(build)(), **options.deployment_options(config)).bind()


def app_builder(args: dict):
    """``import_path: headrank.serve.ray_serve:app_builder`` with ``args``: ``ServeConfig`` fields (model, heads,
    limits, ...) and ``RayOptions`` fields (replicas, autoscaling, resources); the key from $HEADRANK_API_KEY."""
    ray_names = {f.name for f in fields(RayOptions)}
    unknown = set(args) - ray_names - {f.name for f in fields(ServeConfig)}
    if unknown:
        raise ValueError(f"unknown headrank args: {', '.join(sorted(unknown))}")
    settings = {k: v for k, v in args.items() if k not in ray_names}
    settings.setdefault("api_key", os.environ.get("HEADRANK_API_KEY") or None)  # a key never sits in a file
    config = ServeConfig(**settings)
    return application(config, RayOptions(**{k: v for k, v in args.items() if k in ray_names}))


def start_ray(config: ServeConfig, options: RayOptions) -> None:
    """Join ``options.address``, or start a local Ray sized to this machine (on loopback when the service is)."""
    import ray

    if options.address:
        ray.init(address=options.address, log_to_driver=False)
        return
    extra = {"_node_ip_address": "127.0.0.1"} if config.host in LOOPBACK else {}
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, **extra)


def serve_on_ray(config: ServeConfig, options: RayOptions, ready=None) -> None:
    """Deploy and block until SIGTERM / SIGINT; then Ray Serve drains (each replica finishes what it holds, up to
    ``request_timeout_s``) and a local Ray stops. ``ready``: called with the URL once every replica is up."""
    from ray import serve

    stop = threading.Event()
    start_ray(config, options)
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(application(config, options), name=APPLICATION, route_prefix="/")
        logger.info("ray serve: %s", asdict(options) | {"model": config.model})
        if ready is not None:
            ready(f"http://{config.host}:{config.port}")
        stop.wait()
        logger.info("shutting down: draining the replicas")
    finally:
        _shutdown(options)


def _shutdown(options: RayOptions) -> None:
    import ray
    from ray import serve

    try:
        serve.delete(APPLICATION) if options.address else serve.shutdown()
    finally:
        ray.shutdown()
