#!/usr/bin/env bash
# Create (or update) ./.venv with the CPU environment: torch 2.13.0 CPU build, verl 0.9.1's base deps,
# lm-eval, snakemake, and the test tools, all pinned by envs/constraints-cpu.txt. Idempotent.
# The GPU environment (verl + vLLM) is envs/gpu.yaml; vLLM never goes into this one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -c envs/constraints-cpu.txt torch==2.13.0 -e '.[test,workflow,verl]'
python -c "import torch, transformers, scsdpo_verl; print('torch', torch.__version__, '| transformers', transformers.__version__)"
