#!/usr/bin/env bash
# The HTML report as a browser draws it: a real sweep against the real
# server, rendered by headless Chromium; every chart must be laid out across
# the page with lines of non-zero length (the report's inline script records
# both as data- attributes), and the sweep curves must carry a marker per run
# and series: a sweep of unary calls, and a sweep of decode streams.
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
"$bin/attention_loadtest" --target "127.0.0.1:$port" --rpc decode --lq 8 --decode_steps 4 \
  --sweep streams=1,2 --duration 2.5 --progress=false --html "$work/decode.html" \
  >"$work/decode.txt"

# render REPORT CHART=MARKERS...: the charts REPORT must hold, each with the
# markers it must carry (- for a chart without markers).
render() {
  local report="$1"
  shift
  timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --window-size=1280,1000 \
    --user-data-dir="$work/profile" --dump-dom "file://$work/$report" \
    >"$work/dom.html" 2>"$work/chromium.log" || { cat "$work/chromium.log"; exit 1; }
  python3 - "$work/dom.html" "$@" <<'PY'
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
expected = dict(arg.split("=") for arg in sys.argv[2:])
assert sorted(charts) == sorted(expected), sorted(charts)
for name, markers in expected.items():
    a = charts[name]
    assert "data-rendered-width" in a, (name, "the inline script did not run", a)
    width, length = int(a["data-rendered-width"]), int(a["data-line-length"])
    assert width >= 1000, (name, "narrower than the page", width)
    assert length > 0, (name, "no line drawn", length)
    if markers != "-":
        assert int(a["data-markers"]) == int(markers), (name, "markers", a["data-markers"])
print("rendered:", {n: (charts[n]["data-rendered-width"], charts[n]["data-line-length"])
                    for n in expected})
PY
}

per_second="latency-by-percentile=- throughput-per-second=- p99-per-second=-"
render report.html $per_second sweep=4  # p50 and p99 of 2 runs
# ITL p50 and p99 by tokens/s; total and per-stream tokens/s by streams; ITL p99 by streams
render decode.html $per_second sweep=4 decode-tokens-by-streams=4 decode-itl-by-streams=2
kill -TERM "$pid"; wait "$pid"
echo "report_render_test: 2 passed, 0 failed"
