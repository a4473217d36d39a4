#!/usr/bin/env bash
# attention_loadtest's verdict against the real server: exit 0 when no
# request failed, 2 when any did (or more than --max_error_rate of them), 1
# for a bad flag; each failing code's first message on stdout and in the JSON.
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/../lib/start_server.sh"
start_server "$bin" "$work/server.log" --log_calls=false

passed=0
# expect_exit CODE NAME ARGS...: runs the load tester (small attend calls,
# 20 requests) with ARGS, stdout in $work/NAME.out, stderr in $work/NAME.err.
expect_exit() {
  local want="$1" name="$2"
  shift 2
  local rc=0
  "$bin/attention_loadtest" --target "127.0.0.1:$port" --hq 4 --hkv 2 --lq 8 --dk 16 --dv 16 \
    --requests 20 --duration 30 --progress=false "$@" >"$work/$name.out" 2>"$work/$name.err" ||
    rc=$?
  if [[ "$rc" != "$want" ]]; then
    echo "$name: exit $rc, expected $want"; cat "$work/$name.out" "$work/$name.err"; exit 1
  fi
  passed=$((passed + 1))
}

# Hq = 3 over Hkv = 2 heads: the server refuses every request.
expect_exit 2 all_failed --hq 3 --json "$work/all_failed.json" --html "$work/all_failed.html"
grep -q "20 sent = 0 succeeded + 20 failed" "$work/all_failed.out"
grep -q "^  error       INVALID_ARGUMENT (20×): ..*" "$work/all_failed.out"
grep -q "20 of 20 requests failed (100.00%), above --max_error_rate 0" "$work/all_failed.err"
grep -qx "json report written to $work/all_failed.json" "$work/all_failed.out"
grep -q "<td>INVALID_ARGUMENT</td><td>20</td>" "$work/all_failed.html"
grep -q "No request succeeded: there is no latency to plot." "$work/all_failed.html"
python3 - "$work/all_failed.json" "$work/all_failed.out" <<'PY'
import json, sys
errors = json.load(open(sys.argv[1]))["runs"][0]["errors"]
assert [(e["code"], e["count"]) for e in errors] == [("INVALID_ARGUMENT", 20)], errors
line = next(l for l in open(sys.argv[2]) if l.startswith("  error"))
assert line.rstrip("\n").endswith(errors[0]["first_message"]), (line, errors)
assert errors[0]["first_message"], errors
PY

expect_exit 0 none_failed
grep -q "20 sent = 20 succeeded + 0 failed" "$work/none_failed.out"
if grep -q "error  " "$work/none_failed.out"; then echo "none_failed: an error line"; exit 1; fi

expect_exit 0 all_failed_allowed --hq 3 --max_error_rate 1

# Half the requests fail: the budget decides.
printf '1 attend\n1 attend hq=3\n' >"$work/mix.txt"
expect_exit 2 half_failed_strict --mix "$work/mix.txt" --max_error_rate 0.4
grep -q "10 of 20 requests failed (50.00%), above --max_error_rate 0.4" \
  "$work/half_failed_strict.err"
expect_exit 0 half_failed_allowed --mix "$work/mix.txt" --max_error_rate 0.5

# A relative report path is printed absolute.
pushd "$work" >/dev/null
expect_exit 0 relative --html report.html
popd >/dev/null
grep -qx "html report written to $work/report.html" "$work/relative.out"

expect_exit 1 bad_rate --max_error_rate 1.5
grep -q -- "--max_error_rate: expected a fraction in \[0, 1\]" "$work/bad_rate.err"

kill -TERM "$pid"; wait "$pid"
echo "loadtest_exit_test: $passed passed, 0 failed"
