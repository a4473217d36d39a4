#include "client/loadtest/report.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "client/loadtest/report_internal.h"

namespace attention::loadtest {
namespace {

using report_internal::ErrorRate;
using report_internal::kPercentiles;
using report_internal::Mode;
using report_internal::Ms;
using report_internal::RunName;

// The decode lines of the summary: streams, time to first token,
// inter-token latency, tokens/s per stream and in total.
std::string DecodeText(const RunResult& r) {
  const DecodeStats& d = *r.decode;
  std::string out = absl::StrFormat(
      "  decode      %d streams answered; %.1f tokens/s per stream (mean), %.1f in total\n",
      d.streams, d.stream_tokens_per_s(), r.tokens_per_s());
  if (d.reused_tokens) {
    absl::StrAppendFormat(&out, "  reused      %d prompt tokens from the server's prefix cache\n",
                          *d.reused_tokens);
  }
  absl::StrAppendFormat(&out, "  ttft ms     p50 %.3f  p99 %.3f  (%d prompts)\n",
                        Ms(d.ttft.Percentile(50)), Ms(d.ttft.Percentile(99)), d.ttft.count());
  absl::StrAppendFormat(&out, "  itl ms      p50 %.3f  p99 %.3f  (%d gaps)\n",
                        Ms(d.itl.Percentile(50)), Ms(d.itl.Percentile(99)), d.itl.count());
  return out;
}

}  // namespace

std::string SummaryText(const RunResult& r) {
  std::string out;
  absl::StrAppendFormat(&out, "%s%s, %d connection(s) to %s\n",
                        r.label.empty() ? "" : r.label + ": ", Mode(r),
                        r.config.connections, absl::StrJoin(r.config.targets, ","));
  absl::StrAppendFormat(&out, "  workload    %s\n", absl::StrJoin(r.workloads, " | "));
  absl::StrAppendFormat(&out, "  requests    %d sent = %d succeeded + %d failed, in %.2f s\n",
                        r.sent, r.succeeded, r.failed, r.duration_s);
  absl::StrAppendFormat(&out, "  throughput  %.1f req/s, %.1f tokens/s, %.2f GFLOP/s of attention\n",
                        r.rps(), r.tokens_per_s(),
                        r.duration_s > 0 ? r.flops / r.duration_s / 1e9 : 0.0);
  if (r.decode) out += DecodeText(r);
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
    bool decode = false;
    for (const RunResult& r : runs) decode = decode || r.decode.has_value();
    if (decode) {
      out += "\n| run | concurrent streams | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | "
             "tokens/s per stream | tokens/s total |\n";
      out += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
      for (const RunResult& r : runs) {
        if (!r.decode) continue;
        const DecodeStats& d = *r.decode;
        absl::StrAppendFormat(&out, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |\n",
                              r.label, r.config.concurrency, Ms(d.ttft.Percentile(50)),
                              Ms(d.ttft.Percentile(99)), Ms(d.itl.Percentile(50)),
                              Ms(d.itl.Percentile(99)), d.stream_tokens_per_s(), r.tokens_per_s());
      }
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
                         {"tokens_per_s", r.tokens_per_s()},
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
    if (r.decode) {
      const DecodeStats& d = *r.decode;
      Json decode = {
          {"streams", d.streams},
          {"ttft_ms",
           {{"p50", Ms(d.ttft.Percentile(50))}, {"p99", Ms(d.ttft.Percentile(99))},
            {"count", d.ttft.count()}}},
          {"itl_ms",
           {{"p50", Ms(d.itl.Percentile(50))}, {"p99", Ms(d.itl.Percentile(99))},
            {"count", d.itl.count()}}},
          {"tokens_per_s", {{"per_stream_mean", d.stream_tokens_per_s()}, {"total", r.tokens_per_s()}}}};
      if (d.reused_tokens) decode["reused_tokens"] = *d.reused_tokens;
      run["decode"] = std::move(decode);
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
