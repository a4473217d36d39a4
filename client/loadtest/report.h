// attention_loadtest's reports: a human summary, JSON with every figure and
// the time series, and a self-contained HTML page with inline SVG charts.
#ifndef ATTENTION_CLIENT_LOADTEST_REPORT_H_
#define ATTENTION_CLIENT_LOADTEST_REPORT_H_

#include <string>
#include <vector>

#include "client/loadtest/runner.h"

namespace attention::loadtest {

std::string SummaryText(const RunResult& r);
// Several runs (a sweep): one summary each, then the curve as a table.
std::string SweepText(const std::vector<RunResult>& runs);
std::string ReportJson(const std::vector<RunResult>& runs);
std::string ReportHtml(const std::vector<RunResult>& runs);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_REPORT_H_
