#include "client/loadtest/report.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "client/loadtest/chart.h"

namespace attention::loadtest {
namespace {

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

constexpr double kPercentiles[] = {50, 90, 95, 99, 99.9};

std::string Mode(const RunConfig& c) {
  return c.rps > 0 ? absl::StrFormat("open loop at %.1f req/s", c.rps)
                   : absl::StrFormat("closed loop, concurrency %d", c.concurrency);
}

}  // namespace

std::string SummaryText(const RunResult& r) {
  std::string out;
  absl::StrAppendFormat(&out, "%s%s, %d connection(s) to %s\n",
                        r.label.empty() ? "" : r.label + ": ", Mode(r.config),
                        r.config.connections, absl::StrJoin(r.config.targets, ","));
  absl::StrAppendFormat(&out, "  workload    %s\n", absl::StrJoin(r.workloads, " | "));
  absl::StrAppendFormat(&out, "  requests    %d sent = %d succeeded + %d failed, in %.2f s\n",
                        r.sent, r.succeeded, r.failed, r.duration_s);
  absl::StrAppendFormat(&out, "  throughput  %.1f req/s, %.1f tokens/s, %.2f GFLOP/s of attention\n",
                        r.rps(), r.duration_s > 0 ? r.tokens / r.duration_s : 0.0,
                        r.duration_s > 0 ? r.flops / r.duration_s / 1e9 : 0.0);
  absl::StrAppendFormat(&out, "  latency ms  min %.3f  mean %.3f", Ms(r.latency.min()),
                        r.latency.mean() / 1e6);
  for (double p : kPercentiles) {
    absl::StrAppendFormat(&out, "  p%g %.3f", p, Ms(r.latency.Percentile(p)));
  }
  absl::StrAppendFormat(&out, "  max %.3f\n", Ms(r.latency.max()));
  if (r.server_compute.count() > 0) {
    // The server's own compute time of the same calls: what the RPC layer
    // (serialisation, transfer, queueing) adds on top.
    const double compute_p50 = Ms(r.server_compute.Percentile(50));
    absl::StrAppendFormat(&out,
                          "  server ms   compute p50 %.3f  p99 %.3f  (latency p50 = %.2f x "
                          "compute p50)\n",
                          compute_p50, Ms(r.server_compute.Percentile(99)),
                          compute_p50 > 0 ? Ms(r.latency.Percentile(50)) / compute_p50 : 0.0);
  }
  out += "  status     ";
  for (const auto& [code, n] : r.codes) absl::StrAppendFormat(&out, " %s %d", code, n);
  out += "\n";
  for (const auto& [code, message] : r.first_errors) {
    absl::StrAppendFormat(&out, "  error       %s (%d\u00d7): %s\n", code, r.codes.at(code),
                          message);
  }
  return out;
}

std::string SweepText(const std::vector<RunResult>& runs) {
  std::string out;
  for (const RunResult& r : runs) out += SummaryText(r) + "\n";
  if (runs.size() > 1) {
    out += "| run | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|\n";
    for (const RunResult& r : runs) {
      absl::StrAppendFormat(&out, "| %s | %.1f | %.3f | %.3f | %.3f | %.3f | %d |\n", r.label,
                            r.rps(), Ms(r.latency.Percentile(50)), Ms(r.latency.Percentile(90)),
                            Ms(r.latency.Percentile(99)), Ms(r.latency.Percentile(99.9)),
                            r.failed);
    }
  }
  return out;
}

std::string ReportJson(const std::vector<RunResult>& runs) {
  using Json = nlohmann::ordered_json;
  Json out = {{"runs", Json::array()}};
  for (const RunResult& r : runs) {
    const RunConfig& c = r.config;
    Json run;
    run["label"] = r.label;
    run["config"] = {{"targets", c.targets},     {"connections", c.connections},
                     {"concurrency", c.concurrency}, {"rps", c.rps},
                     {"duration_s", c.duration_s},   {"requests", c.requests},
                     {"warmup_s", c.warmup_s},       {"deadline_ms", c.deadline_ms},
                     {"mode", c.rps > 0 ? "open" : "closed"}};
    run["workloads"] = r.workloads;
    run["duration_s"] = r.duration_s;
    run["sent"] = r.sent;
    run["succeeded"] = r.succeeded;
    run["failed"] = r.failed;
    run["status_codes"] = Json::object();
    for (const auto& [code, n] : r.codes) run["status_codes"][code] = n;
    run["errors"] = Json::array();
    for (const auto& [code, message] : r.first_errors) {
      run["errors"].push_back(
          {{"code", code}, {"count", r.codes.at(code)}, {"first_message", message}});
    }
    run["throughput"] = {{"requests_per_s", r.rps()},
                         {"tokens_per_s", r.duration_s > 0 ? r.tokens / r.duration_s : 0.0},
                         {"gflops_per_s", r.duration_s > 0 ? r.flops / r.duration_s / 1e9 : 0.0}};
    Json latency = {{"min", Ms(r.latency.min())}, {"mean", r.latency.mean() / 1e6}};
    for (double p : kPercentiles) {
      latency[absl::StrCat("p", absl::StrReplaceAll(absl::StrCat(p), {{".", "_"}}))] =
          Ms(r.latency.Percentile(p));
    }
    latency["max"] = Ms(r.latency.max());
    run["latency_ms"] = latency;
    if (r.server_compute.count() > 0) {
      run["server_compute_ms"] = {{"p50", Ms(r.server_compute.Percentile(50))},
                                  {"p99", Ms(r.server_compute.Percentile(99))},
                                  {"count", r.server_compute.count()}};
    }
    run["histogram_ms"] = Json::array();
    for (const auto& [upper, n] : r.latency.Buckets()) {
      run["histogram_ms"].push_back({Ms(upper), n});
    }
    run["series"] = Json::array();
    for (const SecondStats& s : r.series) {
      run["series"].push_back({{"t", s.t},
                               {"completed", s.completed},
                               {"errors", s.errors},
                               {"p50_ms", Ms(s.p50_ns)},
                               {"p99_ms", Ms(s.p99_ns)},
                               {"max_ms", Ms(s.max_ns)}});
    }
    out["runs"].push_back(std::move(run));
  }
  // Labels and targets are the user's bytes: invalid UTF-8 becomes U+FFFD.
  return out.dump(1, ' ', false, Json::error_handler_t::replace) + "\n";
}


namespace {

std::string RunName(const RunResult& r) { return r.label.empty() ? Mode(r.config) : r.label; }

// A sweep point's label: the swept parameter's value.
std::string PointLabel(const RunResult& r) {
  return r.config.rps > 0 ? absl::StrFormat("%g/s", r.config.rps)
                          : absl::StrFormat("c=%d", r.config.concurrency);
}

double ErrorRate(const RunResult& r) {
  return r.sent > 0 ? static_cast<double>(r.failed) / static_cast<double>(r.sent) : 0.0;
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
                    F("%.1f", r.duration_s > 0 ? r.tokens / r.duration_s : 0.0),
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

// Latency against throughput, one point per run in the order of the swept
// parameter, each labelled with its value.
std::string SweepChart(const std::vector<RunResult>& runs) {
  std::vector<const RunResult*> order;
  for (const RunResult& r : runs) order.push_back(&r);
  auto swept = [](const RunResult* r) {
    return r->config.rps > 0 ? r->config.rps : static_cast<double>(r->config.concurrency);
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const RunResult* a, const RunResult* b) { return swept(a) < swept(b); });
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
  html += "<h2>Latency (ms)</h2>" + LatencyTable(runs);
  html += "<h2>Errors</h2>" + ErrorsSection(runs);
  html += "<h2>Latency by percentile</h2>" + PercentileChart(runs);
  html += "<h2>Over time</h2>" + TimeCharts(runs);
  if (runs.size() > 1) html += "<h2>Throughput / latency curve</h2>" + SweepChart(runs);
  return html + kRenderMarks + "</body></html>\n";
}

absl::Status CheckErrorRate(const std::vector<RunResult>& runs, double max_error_rate) {
  for (const RunResult& r : runs) {
    if (r.sent == 0) {
      return absl::FailedPreconditionError(absl::StrCat(RunName(r), ": no request completed"));
    }
    if (ErrorRate(r) > max_error_rate) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: %d of %d requests failed (%.2f%%), above --max_error_rate %g", RunName(r),
          r.failed, r.sent, 100 * ErrorRate(r), max_error_rate));
    }
  }
  return absl::OkStatus();
}

}  // namespace attention::loadtest
