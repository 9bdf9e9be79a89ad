#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a project venv in .venv with torch installed FIRST
# (torch==2.13.0 resolves to the local CPU wheel; a bare "torch" would pull a multi-GB CUDA build),
# then this project with its test extras. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"
fi
if ! .venv/bin/python -c "import bridge, harness, megatron.core, transformers, pytest, hypothesis, xdist" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q -e ".[test]"
  touch .venv/.installed
fi
