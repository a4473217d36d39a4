#!/usr/bin/env bash
# Runs the Python and Node client tests against the real attention_server.
#
# Usage: tests/clients/run_client_tests.sh [BIN_DIR]
#   BIN_DIR  directory holding attention_server (default: build/bin under the
#            repository root). Exported to the tests as
#            ATTENTION_SERVER=BIN_DIR/attention_server.
# Environment:
#   VENV    the virtual environment to build and test in (default
#           BIN_DIR/../venv-client, i.e. build/venv-client): created with
#           /usr/bin/python3 -m venv if missing, then `pip install
#           ./client/python[safetensors] pytest` from PyPI.
#   PYTHON  Debian's interpreter (default /usr/bin/python3), which runs the
#           same tests on python3-grpcio/-protobuf/-numpy/-pytest with
#           PYTHONPATH=client/python.
#   NPM     (default npm).
# Runnable from any directory; exits non-zero if any suite failed.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${1:-$repo/build/bin}"
bin_dir="$(cd "$bin_dir" 2>/dev/null && pwd)" || { echo "run_client_tests.sh: no directory ${1:-$repo/build/bin}" >&2; exit 2; }
export ATTENTION_SERVER="$bin_dir/attention_server"
[[ -x "$ATTENTION_SERVER" ]] || { echo "run_client_tests.sh: $ATTENTION_SERVER is not an executable" >&2; exit 2; }
venv="${VENV:-$(dirname "$bin_dir")/venv-client}"
python="${PYTHON:-/usr/bin/python3}"
npm="${NPM:-npm}"
cd "$repo"

failed=()

echo "== Node client (npm test) =="
node_dir="$repo/client/node"
if ! command -v "$npm" >/dev/null; then
  echo "run_client_tests.sh: npm not found" >&2
  failed+=(node)
elif { [[ -d "$node_dir/node_modules/@grpc/grpc-js" && -d "$node_dir/node_modules/@grpc/proto-loader" ]] ||
       (cd "$node_dir" && "$npm" ci --no-audit --no-fund); } &&
     (cd "$node_dir" && "$npm" test); then
  echo "node client tests: OK"
else
  failed+=(node)
fi

echo "== Python client on Debian's $python (pytest) =="
if PYTHONPATH="$repo/client/python" "$python" -m pytest -q -p no:cacheprovider tests/clients/python; then
  echo "python client tests on $python: OK"
else
  failed+=(python-debian)
fi

echo "== Python client installed into $venv from PyPI (pytest), and the READMEs' snippets =="
if { [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"; } &&
   "$venv/bin/pip" install -q --disable-pip-version-check "$repo/client/python[safetensors]" pytest &&
   "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/clients; then
  echo "python client tests in $venv and README snippets: OK"
else
  failed+=(python-venv)
fi

if ((${#failed[@]})); then
  echo "run_client_tests.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run_client_tests.sh: all client tests passed"
