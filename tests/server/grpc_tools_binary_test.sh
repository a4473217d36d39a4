#!/usr/bin/env bash
# The standard gRPC tools against a real server, by reflection alone (no
# proto file): grpcurl lists the services, describes one, and calls Estimate
# and Attend with JSON; a short ghz run against Attend succeeds on every call.
# The tools come from scripts/install-go-tools.sh; without them (no Go) the
# test is skipped (exit 77) with a message.
set -euo pipefail
bin="$1"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$("$repo/scripts/install-go-tools.sh" --bin)"
for t in grpcurl ghz; do
  if [[ ! -x "$tools/$t" ]]; then
    echo "SKIPPED: $tools/$t is not installed (scripts/install-go-tools.sh needs Go)"
    exit 77
  fi
done
work=$(mktemp -d)
pid=""
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
source "$repo/tests/lib/start_server.sh"
start_server "$bin" "$work/server.log" --demo_modules
target="127.0.0.1:$port"
grpcurl() { "$tools/grpcurl" -plaintext "$@"; }

# 1. Reflection lists the services (both v1alpha-served, see README).
grpcurl "$target" list >"$work/list"
for s in attention.v1.AttentionService grpc.health.v1.Health grpc.reflection.v1alpha.ServerReflection; do
  grep -qx "$s" "$work/list" || { echo "grpcurl list lacks $s:"; cat "$work/list"; exit 1; }
done
grpcurl "$target" describe attention.v1.AttentionService >"$work/describe"
grep -q 'rpc Attend' "$work/describe" || { cat "$work/describe"; exit 1; }

# 2. Estimate with JSON in, JSON out (int64 fields arrive as strings).
grpcurl -d '{"config": {"d_model": 4096, "gqa": {"num_q_heads": 32, "num_kv_heads": 8}},
             "batch": 1, "seq_len": 4096}' \
  "$target" attention.v1.AttentionService/Estimate >"$work/estimate.json"
/usr/bin/python3 - "$work/estimate.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
# GQA d_model 4096, 32 / 8 heads of 128: K and V of 8 heads, float32.
assert int(e["kv_cache_bytes_per_token"]) == 2 * 8 * 128 * 4, e
assert int(e["parameters"]) > 0, e
PY

# 3. Attend: q = [1, 0], keys [1, 0] and [0, 1], values 10 and 20 -> 13.3024.
attend='{"query": {"dtype": "DTYPE_FLOAT32", "shape": [1, 1, 1, 2], "data": "AACAPwAAAAA="},
         "key":   {"dtype": "DTYPE_FLOAT32", "shape": [1, 1, 2, 2], "data": "AACAPwAAAAAAAAAAAACAPw=="},
         "value": {"dtype": "DTYPE_FLOAT32", "shape": [1, 1, 2, 1], "data": "AAAgQQAAoEE="}}'
grpcurl -d "$attend" "$target" attention.v1.AttentionService/Attend >"$work/attend.json"
/usr/bin/python3 - "$work/attend.json" <<'PY'
import base64, json, struct, sys
r = json.load(open(sys.argv[1]))
(out,) = struct.unpack("<f", base64.b64decode(r["output"]["data"]))
assert abs(out - 13.3024) < 1e-3, r
PY

# 4. ghz: 200 Attend calls over 4 connections, all OK.
"$tools/ghz" --insecure --call attention.v1.AttentionService/Attend -d "$attend" \
  -n 200 -c 4 --connections 2 --format json -o "$work/ghz.json" "$target"
/usr/bin/python3 - "$work/ghz.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
assert r["count"] == 200 and codes == {"OK": 200}, (r["count"], codes, r.get("errorDistribution"))
print(f"ghz: 200 Attend calls OK, {r['rps']:.0f} req/s, p50 {r['latencyDistribution'][2]['latency'] / 1e6:.2f} ms")
PY
echo "grpcurl and ghz: OK"
