#!/usr/bin/env bash
# Creates build/venv-golden with what tests/golden/make_hf_golden.py needs from
# PyPI: torch (>= 2.5), transformers (a release with the gpt-oss and
# DeepSeek-V2 modeling code), safetensors and numpy. Idempotent: a venv that
# already imports all four at the right versions is left as it is (no
# network). Never needed by `make test`: the C++ tests read only the committed
# files under tests/golden/hf/.
#   scripts/setup-golden-venv.sh              (VENV=DIR to put it elsewhere)
#
# PyPI's Linux x86_64 torch wheel is the CUDA build, and its CPU library
# links the CUDA runtime, so the CUDA wheels (several GB) are installed with
# it; on CPU they are loaded but never used.
set -euo pipefail

venv=${VENV:-build/venv-golden}
python=${PYTHON:-python3}

check() {
  "$venv/bin/python" - <<'PY' 2>/dev/null
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
PY
}

if [[ -x "$venv/bin/python" ]] && versions=$(check); then
  echo "setup-golden-venv: $venv already has $versions"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-golden-venv: creating $venv ($("$python" --version))"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
echo "setup-golden-venv: installing torch>=2.5, transformers, safetensors, numpy from PyPI into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade \
  "torch>=2.5" transformers safetensors numpy
if ! versions=$(check); then
  echo "setup-golden-venv: $venv does not import torch, transformers (with gpt-oss and DeepSeek-V2), safetensors and numpy" >&2
  exit 1
fi
echo "setup-golden-venv: $venv has $versions"
