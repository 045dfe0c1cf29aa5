"""Throughput of `headrank serve --ray` with 1 and 2 replicas against one `headrank serve` process, in one run on
this machine: the same bounded load (DL19 BM25 lists, a fixed number of requests at a fixed client concurrency)
against each, every answer's order checked against the single process's.

    PYTHONPATH=src python benchmarks/ray_serve_bench.py --model headrank-smollm2-135m --out results/ray-serve-bench.json

(run from the repository root: the benchmark data is read from ../shared/data or $HEADRANK_DATA)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from serve_bench import _free_port, load, wait_ready  # the same client loop as the single-process serving benchmark

SETUPS = {  # name -> (serve arguments, environment); 2 cores in all for each setup
    "one process (headrank serve, 2 threads)": (["--max-batch", "1"], {"OMP_NUM_THREADS": "2"}),
    "Ray Serve, 1 replica (2 CPUs)": (["--ray", "--replicas", "1", "--replica-cpus", "2", "--max-batch", "1"], {}),
    "Ray Serve, 2 replicas (1 CPU each)": (["--ray", "--replicas", "2", "--replica-cpus", "1", "--max-batch", "1"],
                                           {}),
}


def start(model: str, extra: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "headrank.cli", "serve", "--model", model, "--port", str(port),
                             "--device", "cpu", "--timeout", "600", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HEADRANK_API_KEY": "", "RAY_USAGE_STATS_ENABLED": "0", **env})
    return proc, wait_ready(proc, f"http://127.0.0.1:{port}")


def orders(url: str, bodies: list[dict]) -> list[list[int]]:
    import httpx

    return [[row["index"] for row in httpx.post(f"{url}/v1/rerank", json=b, timeout=600).json()["results"]]
            for b in bodies]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="headrank-smollm2-135m")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from headrank.data.benchmarks import load_benchmark

    bench = load_benchmark("dl19")
    qids = list(bench.queries)[: args.requests]
    bodies = [{"query": bench.queries[q], "documents": [c.text for c in bench.candidates[q][: args.passages]]}
              for q in qids]
    rows, reference, load_at_start = [], None, os.getloadavg()[0]
    for name, (extra, env) in SETUPS.items():
        proc, url = start(args.model, extra, env)
        try:
            asyncio.run(load(url, bodies[:2], 1))  # warm-up
            got = orders(url, bodies[:4])
            reference = reference or got
            latencies, wall, errors = asyncio.run(load(url, bodies, args.concurrency))
            q = statistics.quantiles(latencies, n=100, method="inclusive")
            rows.append({"setup": name, "requests": len(latencies), "errors": errors, "wall_s": wall,
                         "requests_per_s": len(latencies) / wall, "p50_s": q[49], "p95_s": q[94],
                         "same_order_as_one_process": got == reference})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    base = rows[0]["requests_per_s"]
    for row in rows:
        row["throughput_vs_one_process"] = row["requests_per_s"] / base
    args.out.write_text(json.dumps({
        "command": "PYTHONPATH=src python benchmarks/ray_serve_bench.py --model " + args.model
                   + f" --requests {args.requests} --passages {args.passages} --concurrency {args.concurrency}",
        "model": args.model, "passages": args.passages, "concurrency": args.concurrency,
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()[0], "rows": rows},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
