#!/usr/bin/env bash
# attention_loadtest end to end: a bounded sweep against the real server,
# the JSON report parses and adds up, the HTML report holds its charts.
set -euo pipefail
bin="$1"
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/../lib/start_server.sh"
start_server "$bin" "$work/server.log" --log_calls=false

"$bin/attention_loadtest" --target "127.0.0.1:$port" --rpc forward --module demo-gqa --lq 32 \
  --sweep concurrency=1,2 --requests 150 --duration 8 --connections 2 \
  --json "$work/report.json" --html "$work/report.html" > "$work/summary.txt"
grep -q "| concurrency=2 |" "$work/summary.txt"
grep -q "<svg" "$work/report.html"
grep -q "Throughput / latency curve" "$work/report.html"

# Any python3 will do: only the standard library's json is used.
python3 - "$work/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
runs = report["runs"]
assert len(runs) == 2, runs
for r in runs:
    assert r["sent"] == 150, r["sent"]
    assert r["sent"] == r["succeeded"] + r["failed"]
    assert sum(r["status_codes"].values()) == r["sent"]
    lat = r["latency_ms"]
    order = [lat[k] for k in ("min", "p50", "p90", "p95", "p99", "p99_9", "max")]
    assert order == sorted(order), order
    assert sum(s["completed"] + s["errors"] for s in r["series"]) == r["sent"]
    assert r["throughput"]["requests_per_s"] > 0
print("report ok")
PY
kill -TERM "$pid"; wait "$pid"
echo "loadtest_binary_test: 1 passed, 0 failed"
