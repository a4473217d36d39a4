# Sourced by the shell tests and scripts/soak.sh.
# start_server BIN LOG [FLAGS...] starts BIN/attention_server on a free
# loopback port with its stderr in LOG, and sets `pid` and `port`; exits 1
# when the server has not printed its port within 10 s.
start_server() {
  local bin="$1" log="$2"
  shift 2
  "$bin/attention_server" --listen 127.0.0.1:0 "$@" 2>"$log" &
  pid=$!
  port=""
  for _ in $(seq 200); do
    port=$(grep -o '(port [0-9]*)' "$log" | tr -dc 0-9 || true)
    [[ -n "$port" ]] && break
    sleep 0.05
  done
  [[ -n "$port" ]] || { echo "server did not start"; cat "$log"; exit 1; }
}
