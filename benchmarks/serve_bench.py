"""Latency and throughput of `headrank serve` on loopback: p50 / p95 / p99 and requests/s at several client
concurrencies, with batching on (``--max-batch 8``) and off (``--max-batch 1``). Bounded: each cell sends a
fixed number of requests (DL19 lists of N passages, BM25 order) and stops.

    PYTHONPATH=src python benchmarks/serve_bench.py --model headrank-smollm2-135m --requests 24 --out serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, max_batch: int, threads: int):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HEADRANK_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "headrank.cli", "serve", "--model", model, "--port", str(port),
                             "--max-batch", str(max_batch), "--device", "cpu", "--timeout", "600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return proc, wait_ready(proc, f"http://127.0.0.1:{port}")


def wait_ready(proc, url: str, seconds: float = 300) -> str:
    """The server's URL once /health says 200; the process is killed if that takes longer than ``seconds``."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server at {url} not ready in {seconds:.0f} s")


async def load(url: str, bodies: list[dict], concurrency: int) -> tuple[list[float], float, int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    queue = list(bodies)

    async def worker(client):
        nonlocal errors
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            r = await client.post(f"{url}/v2/rerank", json=body)
            latencies.append(time.perf_counter() - started)
            errors += r.status_code != 200

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="headrank-smollm2-135m")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from headrank.data.benchmarks import load_benchmark

    bench = load_benchmark("dl19")
    qids = sorted(bench.queries)
    bodies = [{"query": bench.queries[q], "documents": [c.text for c in bench.candidates[q][: args.passages]]}
              for q in (qids * (args.requests // len(qids) + 1))[: args.requests]]
    rows = []
    for max_batch in (1, 8):
        proc, url = start(args.model, max_batch, args.threads)
        try:
            asyncio.run(load(url, bodies[:2], 1))  # warm-up
            for c in (int(x) for x in args.concurrency.split(",")):
                latencies, wall, errors = asyncio.run(load(url, bodies, c))
                q = statistics.quantiles(latencies, n=100, method="inclusive")
                rows.append({"batching": max_batch > 1, "max_batch": max_batch, "concurrency": c,
                             "requests": len(latencies), "errors": errors, "p50_s": q[49], "p95_s": q[94],
                             "p99_s": q[98], "requests_per_s": len(latencies) / wall})
                print(json.dumps(rows[-1]))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    args.out.write_text(json.dumps({"model": args.model, "passages": args.passages, "threads": args.threads,
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
