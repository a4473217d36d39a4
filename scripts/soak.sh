#!/usr/bin/env bash
# Soak test: the server at saturation for SECONDS (default 300) under a mixed
# load (attend, forward on several modules, decode streams), sampling its
# RSS every 10 s. Passes when every request succeeded and the mean RSS of
# the last minute is within 10% of the mean of the second minute (after the
# first minute's warm-up): no growth trend. Single samples swing with the
# allocator and are reported, not judged.
#   scripts/soak.sh [SECONDS] [BIN_DIR]
set -euo pipefail
seconds="${1:-300}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${2:-$repo/build/bin}"
work=$(mktemp -d)
trap 'kill -9 ${pid:-} ${decode:-} 2>/dev/null || true' EXIT

source "$repo/tests/lib/start_server.sh"
start_server "$bin" "$work/server.log" --log_calls=false
cat >"$work/mix.txt" <<'MIX'
# weight rpc key=value ...
4 attend b=1 hq=8 hkv=2 lq=64 lk=256 dk=64 dv=64 causal=1
2 forward module=demo-gqa b=1 lq=128
2 forward module=demo-mla b=2 lq=64
1 forward module=demo-mha b=1 lq=256 dtype=f16
1 attend b=2 hq=4 hkv=1 lq=1 lk=2048 dk=128 dv=128 causal=0
MIX
"$bin/attention_loadtest" --target "127.0.0.1:$port" --mix "$work/mix.txt" --concurrency 8 \
  --connections 2 --duration "$seconds" --progress=false --json "$work/mix.json" >"$work/mix.out" &
mix=$!
"$bin/attention_loadtest" --target "127.0.0.1:$port" --rpc decode --module demo-gqa --lq 256 \
  --decode_steps 64 --concurrency 2 --duration "$seconds" --progress=false \
  --json "$work/decode.json" >"$work/decode.out" &
decode=$!
echo "t_s rss_mib" >"$work/rss.txt"
for ((t = 0; t <= seconds; t += 10)); do
  echo "$t $(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)" >>"$work/rss.txt"
  sleep 10
done
wait $mix; wait $decode
kill -TERM $pid; wait $pid
cat "$work/mix.out" "$work/decode.out"
cat "$work/rss.txt"
python3 - "$work/mix.json" "$work/decode.json" "$work/rss.txt" <<'PY'
import json, sys
for path in sys.argv[1:3]:
    run = json.load(open(path))["runs"][0]
    assert run["failed"] == 0 and run["succeeded"] > 0, (path, run["status_codes"])
rows = [l.split() for l in open(sys.argv[3]).read().splitlines()[1:]]
rss = [(int(t), float(r)) for t, r in rows if r]
end = rss[-1][0]
second = [r for t, r in rss if 60 <= t < 120]
last = [r for t, r in rss if t > end - 60]
base, final = sum(second) / len(second), sum(last) / len(last)
after = [r for t, r in rss if t >= 60]
drift = (final - base) / base
print(f"RSS mean {base:.1f} MiB in minute 2, {final:.1f} MiB in the last minute ({100*drift:+.1f}%); "
      f"samples after warm-up {min(after):.1f}..{max(after):.1f} MiB")
assert abs(drift) <= 0.10, "RSS drifted more than 10%"
print("soak: 0 errors, RSS stable")
PY
