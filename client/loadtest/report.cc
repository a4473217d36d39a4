#include "client/loadtest/report.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace attention::loadtest {
namespace {

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

constexpr double kPercentiles[] = {50, 90, 95, 99, 99.9};

std::string Mode(const RunConfig& c) {
  return c.rps > 0 ? absl::StrFormat("open loop at %.1f req/s", c.rps)
                   : absl::StrFormat("closed loop, concurrency %d", c.concurrency);
}

std::string RunName(const RunResult& r) { return r.label.empty() ? Mode(r.config) : r.label; }

double ErrorRate(const RunResult& r) {
  return r.sent > 0 ? static_cast<double>(r.failed) / static_cast<double>(r.sent) : 0.0;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out.push_back(c);
  }
  return out;
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

// A line chart of (x, y) series on [0, xmax] × [0, ymax] in a w × h box.
std::string LineChart(const std::string& title, const std::string& xlabel,
                      const std::string& ylabel,
                      const std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>>& lines,
                      bool log_x_percentile) {
  const int w = 720, h = 300, left = 80, bottom = 40, top = 30, right = 210;
  double xmax = 0, ymax = 0;
  for (const auto& [name, pts] : lines)
    for (const auto& [x, y] : pts) {
      xmax = std::max(xmax, x);
      ymax = std::max(ymax, y);
    }
  xmax = std::max(xmax, 1e-9);
  ymax = std::max(ymax * 1.1, 1e-9);
  const int pw = w - left - right, ph = h - top - bottom;
  auto px = [&](double x) { return left + pw * x / xmax; };
  auto py = [&](double y) { return top + ph * (1 - y / ymax); };
  static const char* kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                  "#edc948", "#b07aa1", "#ff9da7"};
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"11\"><rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/><text x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>",
      w, h, left, Escape(title));
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>"
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>",
                        left, top + ph, left + pw, top + ph, left, top, left, top + ph);
  for (int i = 0; i <= 4; ++i) {
    const double y = ymax * i / 4;
    absl::StrAppendFormat(&svg,
                          "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>"
                          "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>",
                          left - 4, py(y) + 4, y, left, py(y), left + pw, py(y));
  }
  if (log_x_percentile) {
    // x = log10(1 / (1 - p)): 0 -> p0, 1 -> p90, 2 -> p99, 3 -> p99.9
    const char* labels[] = {"p0", "p90", "p99", "p99.9", "p99.99"};
    for (int i = 0; i <= static_cast<int>(std::ceil(xmax)) && i < 5; ++i) {
      absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                            px(i), top + ph + 14, labels[i]);
    }
  } else {
    for (int i = 0; i <= 4; ++i) {
      const double x = xmax * i / 4;
      absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>",
                            px(x), top + ph + 14, x);
    }
  }
  absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                        left + pw / 2, h - 6, Escape(xlabel));
  absl::StrAppendFormat(&svg,
                        "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" "
                        "text-anchor=\"middle\">%s</text>",
                        top + ph / 2, top + ph / 2, Escape(ylabel));
  for (size_t li = 0; li < lines.size(); ++li) {
    const auto& [name, pts] = lines[li];
    const char* color = kColors[li % 8];
    std::string path;
    for (const auto& [x, y] : pts) {
      absl::StrAppendFormat(&path, "%s%.1f,%.1f", path.empty() ? "M" : " L", px(x), py(y));
    }
    absl::StrAppendFormat(&svg, "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>",
                          path, color);
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                          "<text x=\"%d\" y=\"%d\">%s</text>",
                          left + pw + 10, top + 6 + static_cast<int>(li) * 16, color,
                          left + pw + 24, top + 15 + static_cast<int>(li) * 16, Escape(name));
  }
  return svg + "</svg>";
}

}  // namespace

std::string ReportHtml(const std::vector<RunResult>& runs) {
  std::string html =
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>attention_loadtest report"
      "</title><style>body{font-family:sans-serif;margin:24px;max-width:1000px}"
      "pre{background:#f6f6f6;padding:8px}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
      "<h1>attention_loadtest report</h1>";
  html += "<pre>" + Escape(SweepText(runs)) + "</pre>";
  // Percentile curve of every run.
  std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> curves, rate, p99;
  for (const RunResult& r : runs) {
    std::vector<std::pair<double, double>> pts;
    for (double x = 0; x <= 3.0001; x += 0.05) {
      const double p = 100.0 * (1 - std::pow(10.0, -x));
      pts.emplace_back(x, Ms(r.latency.Percentile(p)));
    }
    const std::string name = r.label.empty() ? Mode(r.config) : r.label;
    curves.emplace_back(name, pts);
    std::vector<std::pair<double, double>> rp, pp;
    for (const SecondStats& s : r.series) {
      rp.emplace_back(s.t + 0.5, static_cast<double>(s.completed));
      pp.emplace_back(s.t + 0.5, Ms(s.p99_ns));
    }
    rate.emplace_back(name, rp);
    p99.emplace_back(name, pp);
  }
  html += "<h2>Latency by percentile</h2>" +
          LineChart("latency percentile curve", "percentile", "latency ms", curves, true);
  html += "<h2>Throughput over time</h2>" +
          LineChart("completed requests per second", "seconds", "req/s", rate, false);
  html += "<h2>p99 latency over time</h2>" +
          LineChart("p99 latency per second", "seconds", "ms", p99, false);
  if (runs.size() > 1) {
    std::vector<std::pair<double, double>> p50c, p99c;
    for (const RunResult& r : runs) {
      p50c.emplace_back(r.rps(), Ms(r.latency.Percentile(50)));
      p99c.emplace_back(r.rps(), Ms(r.latency.Percentile(99)));
    }
    html += "<h2>Throughput / latency curve</h2>" +
            LineChart("latency against throughput over the sweep", "req/s", "latency ms",
                      {{"p50", p50c}, {"p99", p99c}}, false);
  }
  html += "</body></html>\n";
  return html;
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
