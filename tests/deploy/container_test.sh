#!/usr/bin/env bash
# Container test: builds the image (Dockerfile) from a clean clone of the
# committed HEAD, runs it on free loopback ports with the host network, waits
# for the image's own HEALTHCHECK (grpc.health.v1 through attention_cli),
# makes real RPCs from a second container (health, list, forward, a short
# load test), reads the metrics endpoint, stops the server with SIGTERM
# (it drains and exits 0), prints the image size and removes the containers
# (the image stays, so a second run builds from cached layers).
#
#   tests/deploy/container_test.sh              build from `git clone` of HEAD
#   tests/deploy/container_test.sh --worktree   build from this working tree's files
#                                               (tracked and untracked, not ignored)
#   tests/deploy/container_test.sh --context DIR  build from DIR as it is
#   tests/deploy/container_test.sh --no-build   test the image as built before
# Environment: IMAGE (attention-service:test) and those of scripts/image.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
image_sh="$repo/scripts/image.sh"
export IMAGE="${IMAGE:-attention-service:test}"
ENGINE="$("$image_sh" engine-name)"   # may install podman (as root, with apt-get)
export ENGINE
mode=clone
context=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --worktree) mode=worktree ;;
    --context) mode=context; context="$2"; shift ;;
    --no-build) mode=none ;;
    *) echo "container_test: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

start=$SECONDS
work=$(mktemp -d)
name="attention-test-$$"
passed=0
engine() { "$image_sh" engine "$@"; }
# Podman without systemd cannot arm the HEALTHCHECK timer and says so on
# every run and stop of the server container; `healthcheck run` works anyway.
engine_quiet() {
  local rc=0
  engine "$@" 2>"$work/stderr" || rc=$?
  grep -v 'unable to get systemd connection' "$work/stderr" >&2 || true
  return $rc
}
remove() {
  if [[ "$ENGINE" == podman ]]; then engine rm -f -t 0 "$@"; else engine rm -f "$@"; fi
}
cleanup() {
  remove "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
started=""
fail() {
  echo "container_test: FAILED: $*" >&2
  if [[ -n "$started" ]]; then
    echo "--- server log:" >&2
    engine logs "$name" 2>&1 | grep -v '"method"' | tail -30 >&2 || true
  fi
  exit 1
}
ok() { passed=$((passed + 1)); echo "container_test: ok: $*"; }

case "$mode" in
  clone)
    git clone -q --no-hardlinks "$repo" "$work/src"
    context="$work/src"
    echo "container_test: clean clone of $(git -C "$context" rev-parse --short HEAD)" ;;
  worktree)
    mkdir "$work/src"
    (cd "$repo" && git ls-files -z -co --exclude-standard \
       | tar --null --ignore-failed-read -T - -cf -) | tar -C "$work/src" -xf -
    context="$work/src" ;;
esac
if [[ "$mode" != none ]]; then
  [[ -f "$context/Dockerfile" ]] || fail "$context has no Dockerfile (committed yet?)"
  build_start=$SECONDS
  if ! "$image_sh" build "$context" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    fail "image build (log above)"
  fi
  tail -1 "$work/build.log"
  build_s=$((SECONDS - build_start))
  ok "image built in ${build_s} s"
fi

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
metrics_port=$(free_port)
target="127.0.0.1:$port"

# The runtime image holds every shared library the binaries link.
if engine run --rm --no-healthcheck --network host --entrypoint /usr/bin/ldd "$IMAGE" \
     /usr/local/bin/attention_server /usr/local/bin/attention_cli \
     /usr/local/bin/attention_loadtest /usr/local/bin/attention_bench | grep 'not found'; then
  fail "missing shared libraries"
fi
ok "no missing shared libraries"

run_start=$SECONDS
# Flags from the environment (ATTN_LISTEN, ATTN_SERVER_FLAGS) and from arguments;
# locked down as in deploy/k8s (read-only root, no capabilities).
engine_quiet run -d --name "$name" --network host \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  -e ATTN_LISTEN="$target" \
  -e ATTN_SERVER_FLAGS="--workers=2 --compute_threads=1 --metrics_port=$metrics_port" \
  "$IMAGE" --drain_seconds=5 >/dev/null
started=1

healthy=""
for _ in $(seq 120); do
  state=$(engine inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
  [[ "$state" == running ]] || fail "container is $state"
  # The image's own HEALTHCHECK (podman runs it on demand; docker on its timer).
  if [[ "$ENGINE" == docker ]]; then
    [[ "$(engine inspect --format '{{.State.Health.Status}}' "$name")" == healthy ]] && healthy=1
  elif engine healthcheck run "$name" >/dev/null 2>&1; then
    healthy=1
  fi
  [[ -n "$healthy" ]] && break
  sleep 0.5
done
[[ -n "$healthy" ]] || fail "HEALTHCHECK never passed"
ok "HEALTHCHECK healthy $((SECONDS - run_start)) s after the start"

[[ "$(engine exec "$name" id -u)" == 10001 ]] || fail "server does not run as uid 10001"
ok "server runs as a non-root user"

# Real RPCs from a second container, as a client elsewhere would make them.
client() { engine run --rm --no-healthcheck --network host "$IMAGE" "$@"; }
[[ "$(client attention_cli health --target "$target")" == SERVING ]] || fail "health"
ok "attention_cli health: SERVING"
client attention_cli list --target "$target" | grep -q '^demo-gqa' || fail "list"
ok "attention_cli list"
out=$(client attention_cli forward --target "$target" --module demo-gqa --lq 16 --causal) \
  || fail "forward"
grep -q 'shape \[1, 16, 512\]' <<<"$out" || fail "forward output: $out"
ok "attention_cli forward: $(head -1 <<<"$out" | cut -c1-60)"
lt=$(client attention_loadtest --target "dns:///localhost:$port" --rpc forward \
       --module demo-gqa --lq 32 --concurrency 2 --duration 2 --progress=false) || fail "loadtest"
grep -q 'succeeded + 0 failed' <<<"$lt" || fail "loadtest: $lt"
ok "attention_loadtest: $(grep -o '[0-9.]* req/s' <<<"$lt")"

/usr/bin/python3 - "$metrics_port" <<'EOF' || fail "metrics endpoint"
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
assert "Forward" in body, body[:500]
EOF
ok "metrics endpoint"

# SIGTERM drains (health NOT_SERVING, calls in flight finish) and exits 0.
engine_quiet stop -t 30 "$name" >/dev/null
code=$(engine inspect --format '{{.State.ExitCode}}' "$name")
[[ "$code" == 0 ]] || fail "exit code $code after SIGTERM"
log=$(engine logs "$name" 2>&1)
grep -q 'signal 15, draining' <<<"$log" || fail "no SIGTERM drain in the log"
grep -q 'attention_server: stopped' <<<"$log" || fail "no clean stop in the log"
ok "SIGTERM: drained, exit 0"

echo "container_test: image $IMAGE: $("$image_sh" size) MiB"
echo "container_test: $passed passed, 0 failed, in $((SECONDS - start)) s"
