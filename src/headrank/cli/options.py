"""Option types that several commands share, declared once (``Annotated``); a command writes
``model: options.Model = DEFAULT_PRESET`` and gets the same flag, help and checks as every other."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from headrank.methods import ATTENTION, BASELINES, names

MethodName = Enum("Method", {m: m for m in names((*ATTENTION, *BASELINES))}, type=str)  # icr first
AttentionMethodName = Enum("AttentionMethod", {m: m for m in names(ATTENTION)}, type=str)


class QuantizeMode(str, Enum):
    none = "none"
    int8 = "int8"


class InputFormat(str, Enum):
    auto = "auto"
    rankgpt = "rankgpt"
    jsonl = "jsonl"
    tsv = "tsv"


Model = Annotated[str, typer.Option(help="Preset (headrank presets), checkpoint directory, named model, hub id, "
                                         "local model directory or .gguf file. Default: the default preset.")]
BaseModel = Annotated[str, typer.Option("--model", help="Named model, hub id, local directory or .gguf file (a "
                                                       "preset means its base model). Default: the default "
                                                       "preset's base model.")]
Method = Annotated[MethodName, typer.Option(help="icr (all heads, calibrated), heads (a head set), or the "
                                                 "generative / pointwise baselines; default: the preset's or "
                                                 "checkpoint's trained heads, heads if --heads is given, else icr. "
                                                 "With a preset, icr / --heads / baselines run on its base model.")]
AttentionMethod = Annotated[AttentionMethodName, typer.Option(help="icr or heads (default: the preset's trained "
                                                                   "heads).")]
Heads = Annotated[str, typer.Option(help="Head set: JSON file or 'layer:head,...'.")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Dtype = Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")]
Quantize = Annotated[QuantizeMode, typer.Option(help="int8: int8 weights and activations in the MLPs of the layers "
                                                     "that run, on the CPU (faster; quality measured in RESULTS.md, "
                                                     "'int8 on CPU'). none: float weights. Default: the preset's "
                                                     "CPU setting.")]
Threads = Annotated[int, typer.Option(min=1, envvar="HEADRANK_THREADS",
                                      help="CPU threads for torch (default: $HEADRANK_THREADS, else torch's own "
                                           "choice, one per core).")]
Fuse = Annotated[float, typer.Option(min=0.0, max=1.0, help="Fuse with the input (first-stage) order: weighted "
                                                            "RRF with this weight on the first stage; 0.5 = plain "
                                                            "RRF; 0 = no fusion. Default: the preset's setting.")]
SafetyValve = Annotated[bool, typer.Option("--safety-valve/--no-safety-valve",
                                           help="Move lists the heads read poorly toward the input order (the "
                                                "preset's valve, headrank.engine.rule). Default: the preset's setting.")]
DataRoot = Annotated[Path, typer.Option(help="Folder with the named benchmarks (default: $HEADRANK_DATA or "
                                             "../shared/data).")]
Depth = Annotated[int, typer.Option("--depth", "-K", min=1, help="Candidates per list (the first-stage top K).")]
Seed = Annotated[int, typer.Option(help="Seed of splits, samples and shuffled lists.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Where to write.")]
Input = Annotated[str, typer.Argument(help="Candidates: RankGPT/rank_llm JSON, JSONL, TSV; '-' reads stdin.")]
Query = Annotated[str, typer.Option("--query", "-q", help="The query (default: the one in the input file).")]
Format = Annotated[InputFormat, typer.Option("--format", help="Input format.")]
Entry = Annotated[int, typer.Option(min=0, help="Which query of a multi-query RankGPT file (0-based).")]
Split = Annotated[str, typer.Option(help="BEIR split of a BEIR benchmark (e.g. nfcorpus train or dev).")]

Ray = Annotated[bool, typer.Option("--ray", help="Serve on Ray Serve: the same app and routes, one model per replica, "
                                                 "Ray Serve's proxy balancing between them (extra 'ray-serve').")]
Replicas = Annotated[int, typer.Option(min=1, help="With --ray: replicas (the initial count when autoscaling).")]
MinReplicas = Annotated[int, typer.Option(min=0, help="With --ray: autoscale between --min-replicas and "
                                                      "--max-replicas (both needed).")]
MaxReplicas = Annotated[int, typer.Option(min=1, help="With --ray: the most replicas autoscaling may start.")]
TargetOngoing = Annotated[float, typer.Option(min=0.001, help="With --ray autoscaling: requests in flight per "
                                                              "replica that autoscaling aims for.")]
ReplicaCpus = Annotated[float, typer.Option(min=0.0, help="With --ray: CPUs reserved per replica.")]
ReplicaGpus = Annotated[float, typer.Option(min=0.0, help="With --ray: GPUs per replica (0.5 packs two on one GPU; "
                                                          "use with --device cuda).")]
RayAddress = Annotated[str, typer.Option(help="With --ray: join this Ray cluster (e.g. 'auto'); default: a local Ray "
                                              "on this machine, stopped with the service.")]

# headrank serve: access, shutdown and proxying
ApiKey = Annotated[str, typer.Option(envvar="HEADRANK_API_KEY", help="Require 'Authorization: Bearer KEY' (or "
                                         "X-API-Key) on every route except these, which carry no data: /health, "
                                         "the playground page /, /docs, /redoc, /redoc.js, /openapi.json and "
                                         "/static-docs/* (the pages ask for the key); /metrics too with "
                                         "--metrics-open.")]
MetricsOpen = Annotated[bool, typer.Option("--metrics-open", help="Serve /metrics without the API key (for a "
                                               "Prometheus scraper that cannot send one).")]
DrainSeconds = Annotated[float, typer.Option(min=0.0, help="On SIGTERM, answer /health with 503 for this long "
                                                 "while still serving requests, so a load balancer stops sending "
                                                 "before the listener closes; then in-flight requests finish "
                                                 "(up to --timeout). Not with --ray (Ray Serve drains itself).")]
RootPath = Annotated[str, typer.Option(help="Path prefix under which a reverse proxy serves this server (the "
                                           "proxy strips it), e.g. /headrank: the docs and the OpenAPI "
                                           "'servers' then use it.")]
