#include "client/loadtest/sweep.h"

#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace attention::loadtest {

absl::StatusOr<std::vector<SweepRun>> ParseSweep(const std::string& sweep, const RunConfig& base,
                                                 bool decode) {
  if (sweep.empty()) return std::vector<SweepRun>{{"", base}};
  std::pair<std::string, std::string> kv = absl::StrSplit(sweep, absl::MaxSplits('=', 1));
  const std::string& name = kv.first;
  if (name != "concurrency" && name != "rps" && name != "streams") {
    return absl::InvalidArgumentError("--sweep: expected concurrency=..., rps=... or streams=...");
  }
  if (name == "streams" && !decode) {
    return absl::InvalidArgumentError("--sweep streams=...: only with --rpc decode");
  }
  std::vector<SweepRun> runs;
  for (absl::string_view v : absl::StrSplit(kv.second, ',', absl::SkipEmpty())) {
    double value = 0;
    if (!absl::SimpleAtod(v, &value) || !(value > 0) ||
        (name != "rps" && (value != std::floor(value) || value > 1e6))) {
      return absl::InvalidArgumentError(absl::StrCat("--sweep: bad value '", v, "'"));
    }
    RunConfig c = base;
    if (name == "rps") {
      c.rps = value;
    } else {
      c.concurrency = static_cast<int>(value);  // streams: a decode stream per virtual user
      c.rps = 0;
    }
    runs.push_back({absl::StrCat(name, "=", v), c});
  }
  if (runs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--sweep: no values in '", sweep, "'"));
  }
  return runs;
}

}  // namespace attention::loadtest
