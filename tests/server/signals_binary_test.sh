#!/usr/bin/env bash
# attention_server's start-up and shutdown as an operator meets them: a token
# file holding only comments refuses to start; an idle connected client does
# not hold the drain; a second SIGTERM during a drain exits at once.
set -euo pipefail
bin="$1"
work=$(mktemp -d)
pid="" idle_pid="" call_pid=""
trap 'kill -9 $pid $idle_pid $call_pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/../lib/start_server.sh"

# Seconds (tenths) until process $1 is gone, at most $2 seconds.
wait_gone() {
  local tenths=0
  while kill -0 "$1" 2>/dev/null && (( tenths < $2 * 10 )); do
    sleep 0.1
    tenths=$((tenths + 1))
  done
  echo "$tenths"
}

# 1. Comments are not tokens: a file of comments and blank lines is refused.
printf '# tokens for prod\n\n   # rotated monthly\n' >"$work/tokens"
status=0
timeout 10 "$bin/attention_server" --listen 127.0.0.1:0 --auth_token_file "$work/tokens" \
  2>"$work/refused.log" || status=$?
(( status == 1 )) || { echo "a token file holding no token: exit status $status"; exit 1; }
grep -q 'at least one token' "$work/refused.log"

# 2. An idle connected client does not hold the drain.
start_server "$bin" "$work/server.log" --log_calls=false
/usr/bin/python3 - "$port" >"$work/idle.log" 2>&1 <<'PY' &
import sys, time, grpc
channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
grpc.channel_ready_future(channel).result(timeout=10)
print("connected", flush=True)
time.sleep(60)
PY
idle_pid=$!
for _ in $(seq 100); do grep -q connected "$work/idle.log" && break; sleep 0.1; done
grep -q connected "$work/idle.log"
kill -TERM "$pid"
tenths=$(wait_gone "$pid" 10)
if kill -0 "$pid" 2>/dev/null; then echo "drain held by an idle client"; exit 1; fi
wait "$pid"  # exit status 0
(( tenths <= 20 )) || { echo "an idle client held the drain for ${tenths}00 ms"; exit 1; }
kill "$idle_pid"

# 3. A second signal during a drain exits at once (status 1), without
#    waiting for the call in flight (10 s).
start_server "$bin" "$work/server.log" --log_calls=false --test_delay_ms=10000
"$bin/attention_cli" --target "127.0.0.1:$port" attend >/dev/null 2>&1 &
call_pid=$!
for _ in $(seq 100); do
  "$bin/attention_cli" --target "127.0.0.1:$port" info 2>/dev/null | grep -q 'inflight_requests: 1' && break
  sleep 0.1
done
kill -TERM "$pid"
for _ in $(seq 50); do grep -q draining "$work/server.log" && break; sleep 0.1; done
kill -TERM "$pid"
tenths=$(wait_gone "$pid" 5)
if kill -0 "$pid" 2>/dev/null; then echo "a second SIGTERM did not stop the drain"; exit 1; fi
status=0
wait "$pid" || status=$?
(( status == 1 )) || { echo "exit status $status after a second signal"; exit 1; }
grep -q 'during the drain, exiting now' "$work/server.log"
echo "signals_binary_test: 3 passed, 0 failed"
