#!/usr/bin/env bash
# The real binaries: attention_server on a free loopback port, attention_cli
# against it, a bad request that fails cleanly, SIGTERM that exits 0; then
# a server on a Unix-domain socket.
set -euo pipefail
bin="$1"
work=$(mktemp -d)
pid="" unix_pid=""
trap 'kill -9 $pid $unix_pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/../lib/start_server.sh"
start_server "$bin" "$work/server.log"
cli=("$bin/attention_cli" --target "127.0.0.1:$port")

"${cli[@]}" health | grep -qx SERVING
"${cli[@]}" list | grep -q '^demo-mla'
"${cli[@]}" attend --causal --dtype f16 --out "$work/out.npy" | grep -q 'variant: gqa'
test -s "$work/out.npy"
"${cli[@]}" forward --module demo-mla --lq 8 --causal | grep -q 'shape \[1, 8, 512\]'
"${cli[@]}" estimate --variant mqa --d_model 4096 --heads 32 --seq_len 1024 \
  | grep -q 'kv_cache_bytes_per_token: 1024'
if "${cli[@]}" attend --hq 6 --hkv 4 2>"$work/err"; then
  echo "bad request succeeded"; exit 1
fi
grep -q 'INVALID_ARGUMENT: key: dim 1 (Hkv) must divide' "$work/err"
"${cli[@]}" health | grep -qx SERVING   # still serving after the bad request

kill -TERM "$pid"
wait "$pid"   # set -e: a non-zero exit fails the test
grep -q '"method":"Attend","code":"OK"' "$work/server.log"
grep -q 'attention_server: stopped' "$work/server.log"
# --listen unix:PATH: the same service for clients on the same host.
"$bin/attention_server" --listen "unix:$work/attn.sock" 2>"$work/unix.log" &
unix_pid=$!
for _ in $(seq 200); do
  grep -q 'listening on unix:' "$work/unix.log" && break
  sleep 0.05
done
unix_cli=("$bin/attention_cli" --target "unix:$work/attn.sock")
"${unix_cli[@]}" health | grep -qx SERVING
"${unix_cli[@]}" forward --module demo-gqa --lq 16 --causal | grep -q 'shape \[1, 16, 512\]'
kill -TERM "$unix_pid"
wait "$unix_pid"
echo "server_binary_test: 2 passed, 0 failed"
