// attention_loadtest's reports: a human summary, JSON with every figure and
// the time series, and a self-contained HTML page (tables and inline SVG
// charts, no network resources), plus the run's pass/fail verdict.
#ifndef ATTENTION_CLIENT_LOADTEST_REPORT_H_
#define ATTENTION_CLIENT_LOADTEST_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/loadtest/runner.h"

namespace attention::loadtest {

// Mode, counts, throughput, latency percentiles, status codes and, per
// failing code, its count and first message ("error  NOT_FOUND (3×): ...").
// Decode runs add streams, tokens/s per stream (mean) and in total, time to
// first token and inter-token latency (p50, p99), and the prompt tokens the
// server reused when its contract reports them.
std::string SummaryText(const RunResult& r);
// Several runs (a sweep): one summary each, then the curve as a table (and
// for decode runs a second table: streams, TTFT, ITL, tokens/s).
std::string SweepText(const std::vector<RunResult>& runs);
// {"runs": [run...]}, each run every figure of SummaryText:
//   label, config {targets, connections, concurrency, rps, duration_s,
//   requests, warmup_s, deadline_ms, mode}, workloads, duration_s, sent,
//   succeeded, failed, status_codes {CODE: n}, errors [{code, count,
//   first_message}] per failing code, throughput {requests_per_s,
//   tokens_per_s, gflops_per_s}, latency_ms {min, mean, p50, p90, p95, p99,
//   p99_9, max}, server_compute_ms {p50, p99, count} (Attend/Forward only),
//   histogram_ms [[upper, n]...], series [{t, completed, errors, p50_ms,
//   p99_ms, max_ms}] per second;
//   decode runs: decode {streams (prompts answered), ttft_ms {p50, p99,
//   count}, itl_ms {p50, p99, count}, tokens_per_s {per_stream_mean, total},
//   reused_tokens (only when DecodeResponse has that field)}.
// For decode a request is a one-token step: latency_ms is the step's.
std::string ReportJson(const std::vector<RunResult>& runs);
// Tables (summary or sweep, decode streams, latency, errors) and charts:
// latency by percentile on a log axis of 1/(1 - p), requests and p99 per
// whole second, and for several runs latency against throughput, one
// labelled marker per run in the order of the swept parameter; for a sweep
// of decode runs that curve is ITL p50/p99 against total tokens/s, followed
// by total and per-stream tokens/s, and ITL p99, against streams. A small
// inline script records each chart's rendered width, line length and
// markers as data- attributes.
std::string ReportHtml(const std::vector<RunResult>& runs);

// OK when no run's failed / sent exceeds `max_error_rate` (0..1) and every
// run completed a request; otherwise FAILED_PRECONDITION naming the first
// such run, its counts and --max_error_rate.
absl::Status CheckErrorRate(const std::vector<RunResult>& runs, double max_error_rate);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_REPORT_H_
