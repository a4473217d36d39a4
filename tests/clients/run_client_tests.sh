#!/usr/bin/env bash
# Runs the Python and Node client tests against the real attention_server.
#
# Usage: tests/clients/run_client_tests.sh [BIN_DIR]
#   BIN_DIR  directory holding attention_server (default: build/bin under the
#            repository root). Exported to the tests as
#            ATTENTION_SERVER=BIN_DIR/attention_server.
# Environment: PYTHON (default /usr/bin/python3), NPM (default npm).
# Runnable from any directory; exits non-zero if any suite failed.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${1:-$repo/build/bin}"
bin_dir="$(cd "$bin_dir" 2>/dev/null && pwd)" || { echo "run_client_tests.sh: no directory ${1:-$repo/build/bin}" >&2; exit 2; }
export ATTENTION_SERVER="$bin_dir/attention_server"
[[ -x "$ATTENTION_SERVER" ]] || { echo "run_client_tests.sh: $ATTENTION_SERVER is not an executable" >&2; exit 2; }
python="${PYTHON:-/usr/bin/python3}"
npm="${NPM:-npm}"

failed=()

echo "== Python client (stubs, then unittest) =="
if "$repo/client/python/generate_stubs.sh" --if-missing &&
   (cd "$repo" && "$python" -m unittest -v tests/clients/test_python_client.py); then
  echo "python client tests: OK"
else
  failed+=(python)
fi

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

if ((${#failed[@]})); then
  echo "run_client_tests.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run_client_tests.sh: all client tests passed"
