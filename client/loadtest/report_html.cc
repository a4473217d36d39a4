// ReportHtml: the tables, and the charts drawn by chart.h.
#include "client/loadtest/report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/loadtest/chart.h"
#include "client/loadtest/report_internal.h"

namespace attention::loadtest {
namespace {

using report_internal::ErrorRate;
using report_internal::kPercentiles;
using report_internal::Ms;
using report_internal::RunName;

// A sweep point's label: the swept parameter's value.
std::string PointLabel(const RunResult& r) {
  if (r.decode) return absl::StrFormat("s=%d", r.config.concurrency);
  return r.config.rps > 0 ? absl::StrFormat("%g/s", r.config.rps)
                          : absl::StrFormat("c=%d", r.config.concurrency);
}

std::string Row(const std::vector<std::string>& cells) {
  std::string row = "<tr>";
  for (size_t i = 0; i < cells.size(); ++i) {
    absl::StrAppend(&row, i == 0 ? "<th>" : "<td>", HtmlEscape(cells[i]),
                    i == 0 ? "</th>" : "</td>");
  }
  return row + "</tr>";
}

std::string Table(const std::string& css_class, const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::string table = absl::StrCat("<table class=\"", css_class, "\"><thead><tr>");
  for (const std::string& h : header) absl::StrAppend(&table, "<th>", HtmlEscape(h), "</th>");
  table += "</tr></thead><tbody>";
  for (const auto& row : rows) table += Row(row);
  return table + "</tbody></table>";
}

std::string F(const char* format, double v) { return absl::StrFormat(format, v); }

std::string SummaryTable(const std::vector<RunResult>& runs) {
  std::vector<std::vector<std::string>> rows;
  for (const RunResult& r : runs) {
    rows.push_back({RunName(r), absl::StrCat(r.config.connections), absl::StrCat(r.sent),
                    absl::StrCat(r.succeeded), absl::StrCat(r.failed),
                    F("%.2f%%", 100 * ErrorRate(r)), F("%.2f", r.duration_s), F("%.1f", r.rps()),
                    F("%.1f", r.tokens_per_s()),
                    F("%.2f", r.duration_s > 0 ? r.flops / r.duration_s / 1e9 : 0.0)});
  }
  return Table("summary", {"run", "connections", "sent", "succeeded", "failed",
                "error rate", "seconds", "req/s", "tokens/s", "GFLOP/s"},
               rows);
}

std::string LatencyTable(const std::vector<RunResult>& runs) {
  std::vector<std::vector<std::string>> rows;
  for (const RunResult& r : runs) {
    const Histogram& h = r.latency;
    std::vector<std::string> row = {RunName(r), F("%.3f", Ms(h.min())), F("%.3f", h.mean() / 1e6)};
    for (double p : kPercentiles) row.push_back(F("%.3f", Ms(h.Percentile(p))));
    row.push_back(F("%.3f", Ms(h.max())));
    const bool timed = r.server_compute.count() > 0;
    row.push_back(timed ? F("%.3f", Ms(r.server_compute.Percentile(50))) : "-");
    row.push_back(timed ? F("%.3f", Ms(r.server_compute.Percentile(99))) : "-");
    rows.push_back(row);
  }
  return Table("latency", {"run", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max",
                "server compute p50", "server compute p99"},
               rows);
}

// Decode runs: streams, time to first token, inter-token latency, tokens/s.
std::string DecodeTable(const std::vector<RunResult>& runs) {
  bool reused = false;
  for (const RunResult& r : runs) reused = reused || (r.decode && r.decode->reused_tokens);
  std::vector<std::vector<std::string>> rows;
  for (const RunResult& r : runs) {
    if (!r.decode) continue;
    const DecodeStats& d = *r.decode;
    std::vector<std::string> row = {
        RunName(r), absl::StrCat(r.config.concurrency), absl::StrCat(d.streams),
        F("%.3f", Ms(d.ttft.Percentile(50))), F("%.3f", Ms(d.ttft.Percentile(99))),
        F("%.3f", Ms(d.itl.Percentile(50))), F("%.3f", Ms(d.itl.Percentile(99))),
        F("%.1f", d.stream_tokens_per_s()), F("%.1f", r.tokens_per_s())};
    if (reused) row.push_back(d.reused_tokens ? absl::StrCat(*d.reused_tokens) : "-");
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header = {"run", "concurrent streams", "streams answered",
                                     "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms",
                                     "tokens/s per stream", "tokens/s total"};
  if (reused) header.push_back("reused tokens");
  return Table("decode", header, rows);
}

std::string ErrorsSection(const std::vector<RunResult>& runs) {
  std::vector<std::vector<std::string>> rows;
  for (const RunResult& r : runs) {
    for (const auto& [code, message] : r.first_errors) {
      rows.push_back({RunName(r), code, absl::StrCat(r.codes.at(code)), message});
    }
  }
  if (rows.empty()) return "<p>Every request succeeded.</p>";
  return Table("errors", {"run", "status", "requests", "first message"}, rows);
}

// Pairs of (x, y) over the seconds of `series` that the run covered wholly.
std::vector<std::pair<double, double>> PerSecond(const RunResult& r,
                                                 double (*value)(const SecondStats&)) {
  std::vector<std::pair<double, double>> points;
  for (const SecondStats& s : FullSeconds(r.series, r.duration_s)) {
    points.emplace_back(s.t + 0.5, value(s));
  }
  return points;
}

std::string PercentileChart(const std::vector<RunResult>& runs) {
  int64_t most = 0;
  for (const RunResult& r : runs) most = std::max(most, r.latency.count());
  if (most == 0) return "<p>No request succeeded: there is no latency to plot.</p>";
  ChartSpec spec{"latency-by-percentile", "Latency by percentile", "percentile", "latency ms"};
  spec.percentile_x = true;
  spec.x_end = PercentileAxisEnd(most);
  std::vector<Series> series;
  for (const RunResult& r : runs) {
    Series s{RunName(r)};
    const double end = std::min(spec.x_end, PercentileAxisEnd(r.latency.count()));
    for (int i = 0; r.latency.count() > 0 && i * 0.02 <= end + 1e-9; ++i) {
      const double x = i * 0.02;
      s.points.emplace_back(x, Ms(r.latency.Percentile(100.0 * (1.0 - std::pow(10.0, -x)))));
    }
    series.push_back(std::move(s));
  }
  return LineChartSvg(spec, series);
}

std::string TimeCharts(const std::vector<RunResult>& runs) {
  std::vector<Series> rate, errors, p99;
  bool any = false, failed = false, trimmed = false;
  for (const RunResult& r : runs) {
    const std::string name = RunName(r);
    rate.push_back({name, PerSecond(r, [](const SecondStats& s) {
                      return static_cast<double>(s.completed);
                    })});
    errors.push_back({name, PerSecond(r, [](const SecondStats& s) {
                        return static_cast<double>(s.errors);
                      })});
    failed = failed || r.failed > 0;
    p99.push_back({name, PerSecond(r, [](const SecondStats& s) { return Ms(s.p99_ns); })});
    any = any || !rate.back().points.empty();
    trimmed = trimmed || FullSeconds(r.series, r.duration_s).size() < r.series.size();
  }
  if (!any) return "<p>No run lasted a whole second: there is no per-second series.</p>";
  std::string html;
  if (trimmed) {
    html += "<p class=\"note\">Each point is one whole second; a run's last, partial second "
            "is left out.</p>";
  }
  html += LineChartSvg({"throughput-per-second", "Completed requests per second", "seconds",
                        "requests/s"},
                       rate);
  if (failed) {
    html += LineChartSvg({"errors-per-second", "Failed requests per second", "seconds",
                          "requests/s"},
                         errors);
  }
  html += LineChartSvg({"p99-per-second", "p99 latency per second", "seconds", "latency ms"}, p99);
  return html;
}

// The runs in the order of the swept parameter.
std::vector<const RunResult*> SweepOrder(const std::vector<RunResult>& runs) {
  std::vector<const RunResult*> order;
  for (const RunResult& r : runs) order.push_back(&r);
  auto swept = [](const RunResult* r) {
    return r->config.rps > 0 ? r->config.rps : static_cast<double>(r->config.concurrency);
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const RunResult* a, const RunResult* b) { return swept(a) < swept(b); });
  return order;
}

// A sweep of decode streams: inter-token latency against total tokens/s,
// then total tokens/s and ITL p99 against the number of streams; a marker
// per run, labelled with its streams.
std::string DecodeSweepCharts(const std::vector<RunResult>& runs) {
  Series itl50{"ITL p50"}, itl99{"ITL p99"}, total{"total"}, per_stream{"per stream (mean)"},
      by_streams{"ITL p99"};
  for (const RunResult* r : SweepOrder(runs)) {
    const DecodeStats& d = *r->decode;
    const double streams = r->config.concurrency;
    const std::string label = PointLabel(*r);
    itl50.points.emplace_back(r->tokens_per_s(), Ms(d.itl.Percentile(50)));
    itl99.points.emplace_back(r->tokens_per_s(), Ms(d.itl.Percentile(99)));
    total.points.emplace_back(streams, r->tokens_per_s());
    per_stream.points.emplace_back(streams, d.stream_tokens_per_s());
    by_streams.points.emplace_back(streams, Ms(d.itl.Percentile(99)));
    for (Series* s : {&itl50, &itl99, &total, &per_stream, &by_streams}) {
      s->point_labels.push_back(label);
    }
  }
  ChartSpec curve{"sweep", "Inter-token latency against throughput", "tokens/s (total)",
                  "inter-token latency ms"};
  ChartSpec tokens{"decode-tokens-by-streams", "Tokens/s against streams", "streams",
                   "tokens/s"};
  ChartSpec itl{"decode-itl-by-streams", "ITL p99 against streams", "streams",
                "inter-token latency ms"};
  curve.markers = tokens.markers = itl.markers = true;
  return LineChartSvg(curve, {itl50, itl99}) + LineChartSvg(tokens, {total, per_stream}) +
         LineChartSvg(itl, {by_streams});
}

// Latency against throughput, one point per run in the order of the swept
// parameter, each labelled with its value.
std::string SweepChart(const std::vector<RunResult>& runs) {
  bool decode = true;
  for (const RunResult& r : runs) decode = decode && r.decode.has_value();
  if (decode) return DecodeSweepCharts(runs);
  const std::vector<const RunResult*> order = SweepOrder(runs);
  Series p50{"p50"}, p99{"p99"};
  for (const RunResult* r : order) {
    p50.points.emplace_back(r->rps(), Ms(r->latency.Percentile(50)));
    p99.points.emplace_back(r->rps(), Ms(r->latency.Percentile(99)));
    p50.point_labels.push_back(PointLabel(*r));
    p99.point_labels.push_back(PointLabel(*r));
  }
  ChartSpec spec{"sweep", "Latency against throughput", "requests/s", "latency ms"};
  spec.markers = true;
  return LineChartSvg(spec, {p50, p99});
}

// Marks each chart with what the browser drew (its rendered width and the
// total length of its lines), for tests/loadtest/report_render_test.py.
constexpr char kRenderMarks[] = R"(<script>
for (const svg of document.querySelectorAll("svg.chart")) {
  let length = 0;
  for (const line of svg.querySelectorAll("path.line")) length += line.getTotalLength();
  svg.dataset.renderedWidth = Math.round(svg.getBoundingClientRect().width);
  svg.dataset.lineLength = Math.round(length);
  svg.dataset.markers = svg.querySelectorAll("circle.marker").length;
}
</script>)";

}  // namespace

std::string ReportHtml(const std::vector<RunResult>& runs) {
  std::string html =
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>attention_loadtest report"
      "</title><style>body{font-family:sans-serif;margin:24px 32px;color:#222}"
      "table{border-collapse:collapse;margin:8px 0 16px}"
      "th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}"
      "tbody th{text-align:left;font-weight:normal}thead th{background:#f2f2f2}"
      "table.errors td:last-child{text-align:left}svg.chart{display:block;margin:12px 0 28px}"
      ".note{color:#666}</style></head><body><h1>attention_loadtest report</h1>";
  if (!runs.empty()) {
    absl::StrAppend(&html, "<p>Target ", HtmlEscape(absl::StrJoin(runs[0].config.targets, ", ")),
                    "; workload ", HtmlEscape(absl::StrJoin(runs[0].workloads, " | ")),
                    "; latencies are of successful requests.</p>");
  }
  html += runs.size() > 1 ? "<h2>Sweep</h2>" : "<h2>Summary</h2>";
  html += SummaryTable(runs);
  bool decode = false;
  for (const RunResult& r : runs) decode = decode || r.decode.has_value();
  if (decode) {
    html += "<h2>Decode streams</h2><p class=\"note\">TTFT: from sending a stream's prompt "
            "to its response; ITL: between successive one-token responses of a stream; "
            "tokens/s per stream: its tokens after the prompt over the time they took.</p>" +
            DecodeTable(runs);
  }
  html += "<h2>Latency (ms)</h2>" + LatencyTable(runs);
  html += "<h2>Errors</h2>" + ErrorsSection(runs);
  html += "<h2>Latency by percentile</h2>" + PercentileChart(runs);
  html += "<h2>Over time</h2>" + TimeCharts(runs);
  if (runs.size() > 1) html += "<h2>Throughput / latency curve</h2>" + SweepChart(runs);
  return html + kRenderMarks + "</body></html>\n";
}

}  // namespace attention::loadtest
