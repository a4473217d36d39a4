#!/usr/bin/env bash
# Creates build/venv-golden with what tests/golden/make_hf_golden.py needs from
# PyPI: torch (>= 2.5), transformers (a release with the gpt-oss and
# DeepSeek-V2 modeling code), safetensors and numpy. Idempotent: a venv that
# already imports all four at the right versions is left as it is (no
# network). Never needed by `make test`: the C++ tests read only the committed
# files under tests/golden/hf/.
#   scripts/setup-golden-venv.sh              (VENV=DIR to put it elsewhere)
# torch from PyPI brings its CUDA wheels: see scripts/lib/torch_venv.sh.
set -euo pipefail
source "$(dirname "$0")/lib/torch_venv.sh"

check='
import sys
import numpy, safetensors, torch, transformers
major, minor = (int(x) for x in torch.__version__.split(".")[:2])
if (major, minor) < (2, 5):
    sys.exit(1)
# The families make_hf_golden.py builds must all be present.
from transformers.models.gpt_oss import modeling_gpt_oss  # noqa: F401
from transformers.models.deepseek_v2 import modeling_deepseek_v2  # noqa: F401
from transformers.models.qwen3 import modeling_qwen3  # noqa: F401
from transformers.models.gemma2 import modeling_gemma2  # noqa: F401
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"safetensors {safetensors.__version__}, numpy {numpy.__version__}")
'
setup_torch_venv setup-golden-venv "${VENV:-build/venv-golden}" "$check" \
  "torch>=2.5" transformers safetensors numpy
