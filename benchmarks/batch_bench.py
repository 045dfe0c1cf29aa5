"""Throughput of `headrank rerank-batch`: in process vs 1 and 2 Ray actors on the same lists, and the peak
memory (RSS) of each Ray actor process. Each configuration runs as its own CLI process into a fresh folder.

    PYTHONPATH=src python benchmarks/batch_bench.py --model headrank-smollm2-135m --queries 12 --out batch.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def actor_rss_mib() -> list[float]:
    """RSS of the running Ray actor processes (their command line names the map worker)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "MapWorker" not in cmd:
                continue
            rss = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("VmRSS"))
            out.append(int(rss.split()[1]) / 1024)
        except (OSError, StopIteration):
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="headrank-smollm2-135m")
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from headrank.data.benchmarks import default_data_root

    entries = json.loads((default_data_root() / "msmarco-passage" / "dl19" / "bm25-top100.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cands = Path(tmp) / "lists.json"
        picked = entries[: args.queries]
        for e in picked:
            e["hits"] = e["hits"][: args.depth]
        cands.write_text(json.dumps(picked))
        for workers in (0, 1, 2):
            out = Path(tmp) / f"w{workers}"
            cmd = [sys.executable, "-m", "headrank.cli", "rerank-batch", "--candidates", str(cands), "--out", str(out),
                   "--model", args.model, "--workers", str(workers), "--batch-size", "1", "--device", "cpu"]
            peaks: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peaks.append(max(actor_rss_mib() or [0.0]))
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - started
            stop.set()
            sampler.join()
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            rows.append({"workers": workers, "queries": len(picked), "wall_s": wall,
                         "queries_per_s": len(picked) / wall,
                         "peak_actor_rss_mib": max(peaks) if workers and peaks else None})
            print(json.dumps(rows[-1]))
    for row in rows:
        row["ratio_to_in_process"] = row["queries_per_s"] / rows[0]["queries_per_s"]
    args.out.write_text(json.dumps({"model": args.model, "depth": args.depth, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
