#!/usr/bin/env bash
# Creates build/venv-bench with what bench/anchors.py needs from PyPI: torch
# (>= 2.5, for scaled_dot_product_attention's enable_gqa), onnxruntime, onnx
# and numpy. Idempotent: a venv that already imports all four at the right
# versions is left as it is (no network). Never needed by `make test`.
#   scripts/setup-bench-venv.sh              (VENV=DIR to put it elsewhere)
# torch from PyPI brings its CUDA wheels: see scripts/lib/torch_venv.sh.
set -euo pipefail
source "$(dirname "$0")/lib/torch_venv.sh"

check='
import sys
import numpy, onnx, onnxruntime, torch
major, minor = (int(x) for x in torch.__version__.split(".")[:2])
if (major, minor) < (2, 5):
    sys.exit(1)
print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"onnx {onnx.__version__}, numpy {numpy.__version__}")
'
setup_torch_venv setup-bench-venv "${VENV:-build/venv-bench}" "$check" \
  "torch>=2.5" onnxruntime onnx numpy
