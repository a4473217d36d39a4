// attention_loadtest's --sweep: one run per value of a parameter, for the
// throughput/latency curve.
#ifndef ATTENTION_CLIENT_LOADTEST_SWEEP_H_
#define ATTENTION_CLIENT_LOADTEST_SWEEP_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/loadtest/runner.h"
#include "client/loadtest/workload.h"

namespace attention::loadtest {

struct SweepRun {
  std::string label;  // "concurrency=4", "rps=100", "streams=16"
  RunConfig config;
};

// The runs of `sweep`, each `base` with one value set, in the order given:
//   concurrency=1,2,4   closed loop at each concurrency
//   rps=50,100          open loop at each rate
//   streams=1,4,16      decode (`decode` set): that many streams at once
// An empty `sweep` is the one run of `base`, unlabelled. INVALID_ARGUMENT
// for another parameter, a value that is not a positive number (whole for
// concurrency and streams), no value, or streams= without `decode`.
absl::StatusOr<std::vector<SweepRun>> ParseSweep(const std::string& sweep, const RunConfig& base,
                                                 bool decode);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_SWEEP_H_
