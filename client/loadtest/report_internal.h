// Helpers shared by the text/JSON and the HTML reports. Private to
// report.cc and report_html.cc.
#ifndef ATTENTION_CLIENT_LOADTEST_REPORT_INTERNAL_H_
#define ATTENTION_CLIENT_LOADTEST_REPORT_INTERNAL_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "client/loadtest/runner.h"

namespace attention::loadtest::report_internal {

inline double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

inline constexpr double kPercentiles[] = {50, 90, 95, 99, 99.9};

// "closed loop, concurrency 4", "open loop at 100.0 req/s",
// "closed loop, 4 decode stream(s)".
inline std::string Mode(const RunResult& r) {
  const RunConfig& c = r.config;
  if (r.decode) return absl::StrFormat("closed loop, %d decode stream(s)", c.concurrency);
  return c.rps > 0 ? absl::StrFormat("open loop at %.1f req/s", c.rps)
                   : absl::StrFormat("closed loop, concurrency %d", c.concurrency);
}

// A run's label, or its mode when it has none.
inline std::string RunName(const RunResult& r) { return r.label.empty() ? Mode(r) : r.label; }

inline double ErrorRate(const RunResult& r) {
  return r.sent > 0 ? static_cast<double>(r.failed) / static_cast<double>(r.sent) : 0.0;
}

}  // namespace attention::loadtest::report_internal

#endif  // ATTENTION_CLIENT_LOADTEST_REPORT_INTERNAL_H_
