# Sourced by scripts/setup-bench-venv.sh and scripts/setup-golden-venv.sh: a
# venv of PyPI packages around torch, created or completed idempotently.
#
# PyPI's Linux x86_64 torch wheel is the CUDA build, and its CPU library
# itself (libtorch_cpu.so) links libcudart and libcupti, while libtorch.so
# links libtorch_cuda.so and so every CUDA library: `pip install --no-deps
# torch` does not import. The CUDA wheels (several GB) are installed with it;
# on CPU they are loaded but never used.

# setup_torch_venv NAME VENV CHECK PACKAGE...
#   CHECK is Python that exits non-zero unless the venv has what it needs,
#   and prints the versions it found. A venv that passes it is left as it is
#   (no network); otherwise the venv is created (python3, or $PYTHON) and
#   the packages installed, and CHECK must pass afterwards.
setup_torch_venv() {
  local name=$1 venv=$2 check=$3
  shift 3
  local python=${PYTHON:-python3} versions
  if [[ -x "$venv/bin/python" ]] && versions=$("$venv/bin/python" -c "$check" 2>/dev/null); then
    echo "$name: $venv already has $versions"
    return 0
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "$name: creating $venv ($("$python" --version))"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
  fi
  echo "$name: installing $* from PyPI into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$@"
  if ! versions=$("$venv/bin/python" -c "$check"); then
    echo "$name: $venv does not import what it needs (packages: $*)" >&2
    return 1
  fi
  echo "$name: $venv has $versions"
}
