"""The GPU benchmark script runs end to end on CPU with a tiny config (the real run needs a GPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_bench_smoke_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_bench.py"), "--tiny", "--device", "cpu",
                           "--sizes", "4", "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert data["capture_vs_eager_max_abs"] < 1e-5
    row = data["rows"][0]
    assert row["L*"] == 2 and row["headrank"]["latency_ms"] > 0 and row["icr"]["prefill_tflop"] > row["headrank"]["prefill_tflop"]
    assert "| tiny | 4 |" in (tmp_path / "gpu_bench.md").read_text()
