"""The GPU benchmark's prepared command runs end to end on CPU with tiny shapes (the real run needs a GPU):
micro baselines, the API end to end with the real Qwen3 tokenizer, build-preset, the other commands with --device
and the service under load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_bench_rehearsal_on_cpu(tmp_path, qwen3_tokenizer):
    """The exact prepared command (benchmarks/gpu_run.sh, as the device runs it), with --tiny: on a machine
    without CUDA it picks the CPU by itself. A long run (1.5 min on 2 cores): behind the slow marker, run it
    (``pytest -m slow tests/test_gpu_bench.py``) before spending device time."""
    qwen3_tokenizer.save_pretrained(tmp_path / "tok")
    (tmp_path / "no-wheels").mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
           "QWEN3_TOKENIZER": str(tmp_path / "tok"), "WHEELS": str(tmp_path / "no-wheels")}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh"), "--tiny", "--sizes", "4", "--work",
                           str(tmp_path / "work")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "out" / "gpu_bench.json").read_text())
    assert data["capture_vs_eager_max_abs"] < 1e-5
    row = data["micro"][0]
    assert row["L*"] == 2 and all(row[m]["latency_ms"] > 0 for m in ("headrank", "icr", "plain_forward", "generate"))
    assert data["e2e"]["N=4"]["warm_ms"] > 0 and data["e2e"]["N=4"]["tokens"] > 0
    assert data["e2e"]["N=4"]["new_batches_bucketed_mean_ms"] > 0 and data["e2e"]["N=4"]["warm_up_batch_shapes"] > 0
    assert data["build"]["returncode"] == 0 and data["build"]["preset_written"], data["build"]
    commands = data["commands"]
    assert all(commands[c]["returncode"] == 0 for c in ("evaluate", "adapt", "rerank-batch")), commands
    assert commands["adapt --corpus"]["wrote_on_device"], commands
    assert all(data["serve"][f"batch={b}"]["errors"] == 0 and data["serve"][f"batch={b}"]["ready_s"] > 0
               for b in (1, 8))
    assert "| tiny | 4 |" in (tmp_path / "out" / "gpu_bench.md").read_text()


def test_gpu_bench_full_run_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for device in (["--device", "cuda"], []):  # asked for, or the full run's default
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_bench.py"), *device, "--out",
                               str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
