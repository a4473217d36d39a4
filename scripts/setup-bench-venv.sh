#!/usr/bin/env bash
# Creates build/venv-bench with what bench/anchors.py needs from PyPI: torch
# (>= 2.5, for scaled_dot_product_attention's enable_gqa), onnxruntime, onnx
# and numpy. Idempotent: a venv that already imports all four at the right
# versions is left as it is (no network). Never needed by `make test`.
#   scripts/setup-bench-venv.sh              (VENV=DIR to put it elsewhere)
#
# PyPI's Linux x86_64 torch wheel is the CUDA build, and its CPU library
# itself (libtorch_cpu.so) links libcudart and libcupti, while libtorch.so
# links libtorch_cuda.so and so every CUDA library: `pip install --no-deps
# torch` does not import. The CUDA wheels (several GB) are installed with it;
# on CPU they are loaded but never used.
set -euo pipefail

venv=${VENV:-build/venv-bench}
python=${PYTHON:-python3}

check() {
  "$venv/bin/python" - <<'PY' 2>/dev/null
import sys
import numpy, onnx, onnxruntime, torch
major, minor = (int(x) for x in torch.__version__.split(".")[:2])
if (major, minor) < (2, 5):
    sys.exit(1)
print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"onnx {onnx.__version__}, numpy {numpy.__version__}")
PY
}

if [[ -x "$venv/bin/python" ]] && versions=$(check); then
  echo "setup-bench-venv: $venv already has $versions"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-bench-venv: creating $venv ($("$python" --version))"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
echo "setup-bench-venv: installing torch>=2.5, onnxruntime, onnx, numpy from PyPI into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade \
  "torch>=2.5" onnxruntime onnx numpy
if ! versions=$(check); then
  echo "setup-bench-venv: $venv does not import torch, onnxruntime, onnx and numpy" >&2
  exit 1
fi
echo "setup-bench-venv: $venv has $versions"
