#!/usr/bin/env bash
# GPU readiness check in one command (what it runs: bench/gpu_check.py's docstring; each check: bench/gpucheck/).
#   bash bench/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR]
# On the lent GPU machine its own python3 runs it (torch and transformers preinstalled); TRL and the pieces of
# `datasets` it lacks travel as wheels in .whl/ (git-ignored; how to fill it: docs/gpu.md) and are installed
# into /tmp/gpu_check_site, without network. Here the project's .venv runs it when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if ! "$PY" -c "import trl, datasets" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "note: TRL is not importable by $PY and there is no .whl/ folder of wheels (docs/gpu.md): the TRL row is skipped" >&2
  else
  wheels=(.whl/trl-*.whl .whl/datasets-*.whl .whl/dill-*.whl .whl/multiprocess-*.whl)
  "$PY" -c "import xxhash" 2>/dev/null || wheels+=(.whl/xxhash-*.whl)
  # datasets 5.2 needs pyarrow >= 24: the wheel travels along in case the machine's is older
  "$PY" -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null \
    || wheels+=(.whl/pyarrow-*.whl)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site \
    "${wheels[@]}"
  export PYTHONPATH="/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
# cuBLAS's deterministic mode (the resume check turns torch's deterministic algorithms on); set before CUDA starts
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec "$PY" -m bench.gpu_check "$@"
