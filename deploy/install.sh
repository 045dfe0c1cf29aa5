#!/bin/sh
# The container image's install steps: the Dockerfile runs this file, and tests/test_deploy.py runs it into a
# fresh virtual environment, so what the image runs is what the suite checks.
#   PYTHON         the interpreter to install into (default: python3)
#   TORCH_SPEC     the torch requirement (default: the CPU pin of this project; a CUDA build on GPU images)
#   HEADRANK_SPEC  what to install (default: this checkout with the serve extra)
set -eu
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --no-cache-dir --upgrade pip
"$PYTHON" -c "import torch" 2>/dev/null || "$PYTHON" -m pip install --quiet --no-cache-dir "${TORCH_SPEC:-torch==2.13.0}"
"$PYTHON" -m pip install --quiet --no-cache-dir "${HEADRANK_SPEC:-.[serve]}"
