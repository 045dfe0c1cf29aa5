#!/usr/bin/env bash
# One-line runner for a lent GPU machine (torch + transformers preinstalled, no network):
#   bash benchmarks/run_gpu_bench.sh            # writes gpu_bench.json / gpu_bench.md to $OUT (or ./gpu-bench-out)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_bench.py --out "${OUT:-gpu-bench-out}" "$@"
