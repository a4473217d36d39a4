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
std::string SummaryText(const RunResult& r);
// Several runs (a sweep): one summary each, then the curve as a table.
std::string SweepText(const std::vector<RunResult>& runs);
// Every figure of SummaryText, the histogram, the per-second series, and
// "errors": [{code, count, first_message}] per failing code.
std::string ReportJson(const std::vector<RunResult>& runs);
// Tables (summary or sweep, latency, errors) and charts: latency by
// percentile on a log axis of 1/(1 - p), requests and p99 per whole second,
// and for several runs latency against throughput, one labelled marker per
// run in the order of the swept parameter. A small inline script records
// each chart's rendered width and line length as data- attributes.
std::string ReportHtml(const std::vector<RunResult>& runs);

// OK when no run's failed / sent exceeds `max_error_rate` (0..1) and every
// run completed a request; otherwise FAILED_PRECONDITION naming the first
// such run, its counts and --max_error_rate.
absl::Status CheckErrorRate(const std::vector<RunResult>& runs, double max_error_rate);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_REPORT_H_
