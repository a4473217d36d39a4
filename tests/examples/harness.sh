# Sourced by the tests/examples/run_*_test.sh scripts, after they set up
# nothing else: the scratch directory $work, the server's $pid (set by
# tests/lib/start_server.sh) killed on exit, `fail MESSAGE` (prints the
# server log's tail and exits 1), and the closing "0 passed, 1 failed" line
# whenever the script ends before setting passed=1.
pid=""
passed=0
work=$(mktemp -d)
cleanup() {
  [[ -n "$pid" ]] && { kill -9 "$pid"; wait "$pid"; } 2>/dev/null
  rm -rf "$work"
  ((passed)) || echo "0 passed, 1 failed"  # whatever way it ended
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  [[ -s "$work/server.log" ]] && { echo "-- server log (tail) --"; tail -n 20 "$work/server.log"; }
  exit 1
}
