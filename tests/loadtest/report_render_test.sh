#!/usr/bin/env bash
# The HTML report as a browser draws it: a real sweep against the real
# server, rendered by headless Chromium; every chart must be laid out across
# the page with lines of non-zero length (the report's inline script records
# both as data- attributes), and the sweep curve must carry a marker per run.
# Exits 77 (skipped) when Chromium is not installed.
set -euo pipefail
bin=$(cd "$1" && pwd)
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$chromium" ]]; then
  echo "report_render_test: SKIPPED: chromium is not installed (scripts/install-deps.sh)"
  exit 77
fi
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/../lib/start_server.sh"
start_server "$bin" "$work/server.log" --log_calls=false

# 2.5 s per run: two whole seconds for the per-second charts.
"$bin/attention_loadtest" --target "127.0.0.1:$port" --hq 4 --hkv 2 --lq 8 --dk 16 --dv 16 \
  --sweep concurrency=1,2 --duration 2.5 --progress=false --html "$work/report.html" \
  >"$work/summary.txt"

timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --window-size=1280,1000 \
  --user-data-dir="$work/profile" --dump-dom "file://$work/report.html" \
  >"$work/dom.html" 2>"$work/chromium.log" || { cat "$work/chromium.log"; exit 1; }

python3 - "$work/dom.html" <<'PY'
import html.parser, sys

class Charts(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.charts = {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "data-chart" in a:
            self.charts[a["data-chart"]] = a

parser = Charts()
parser.feed(open(sys.argv[1]).read())
charts = parser.charts
expected = ["latency-by-percentile", "throughput-per-second", "p99-per-second", "sweep"]
assert sorted(charts) == sorted(expected), sorted(charts)
for name in expected:
    a = charts[name]
    assert "data-rendered-width" in a, (name, "the inline script did not run", a)
    width, length = int(a["data-rendered-width"]), int(a["data-line-length"])
    assert width >= 1000, (name, "narrower than the page", width)
    assert length > 0, (name, "no line drawn", length)
assert int(charts["sweep"]["data-markers"]) == 4, charts["sweep"]  # p50 and p99 of 2 runs
print("rendered:", {n: (charts[n]["data-rendered-width"], charts[n]["data-line-length"])
                    for n in expected})
PY
kill -TERM "$pid"; wait "$pid"
echo "report_render_test: 1 passed, 0 failed"
