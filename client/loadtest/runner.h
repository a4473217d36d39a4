// attention_loadtest's engine.
//
// Closed loop (rps == 0): `concurrency` virtual users each keep one request
// outstanding, issuing the next when the last completes. Open loop
// (rps > 0): requests are issued on a fixed timetable (request i at
// start + i / rps) whatever the server does, and latency is measured from
// the *scheduled* time, so a slow server cannot hide its queueing behind a
// client that waits (no coordinated omission). Unary calls use gRPC's
// asynchronous callback API over `connections` channels (one TCP connection
// each); decode streams run one per virtual user (`concurrency` streams at
// once, each opened when the last one of its user ends). Every run is
// bounded by duration and/or a request count; for decode a request is a
// one-token step, and a stream takes its steps from the count when it opens
// (so a bound of k x decode_steps runs k whole streams).
#ifndef ATTENTION_CLIENT_LOADTEST_RUNNER_H_
#define ATTENTION_CLIENT_LOADTEST_RUNNER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/loadtest/histogram.h"
#include "client/attention_client.h"
#include "client/loadtest/workload.h"

namespace attention::loadtest {

struct RunConfig {
  std::vector<std::string> targets;  // gRPC targets; connections are spread over them
  int connections = 1;
  int concurrency = 1;             // closed loop
  double rps = 0;                  // > 0: open loop at this rate
  double duration_s = 10;          // 0: bounded by `requests` only
  int64_t requests = 0;            // 0: bounded by `duration_s` only
  double warmup_s = 0;             // run first, not recorded
  double deadline_ms = 0;          // per call; 0: none
  std::vector<std::pair<std::string, std::string>> metadata;  // e.g. authorization
  client::ClientOptions tls;  // TLS fields only (CA, client cert/key, server name)
  int64_t max_outstanding = 20000;  // open loop: more is counted as a local failure
  bool progress = true;             // live line on stderr when it is a terminal
};

struct SecondStats {
  double t = 0;  // seconds since the measured phase began
  int64_t completed = 0, errors = 0;
  int64_t p50_ns = 0, p99_ns = 0, max_ns = 0;
};

// Decode streams as a user of a generative model sees them. A stream sends
// `start`, then its prompt chunk of Lq tokens, then one-token steps.
struct DecodeStats {
  int64_t streams = 0;  // streams whose prompt was answered
  // ns from writing the prompt chunk to reading its response (time to first
  // token), one per answered prompt.
  Histogram ttft;
  // ns between successive step responses of a stream (inter-token latency):
  // steps - 1 per stream.
  Histogram itl;
  // Per stream with >= 1 step: B x steps / (its last response - its prompt's
  // response), summed (mean = stream_tokens_per_s_sum / rate_streams).
  double stream_tokens_per_s_sum = 0;
  int64_t rate_streams = 0;
  // Sum of DecodeResponse.reused_tokens (prefix-cache hits), when the
  // contract has that field; absent otherwise.
  std::optional<int64_t> reused_tokens;

  double stream_tokens_per_s() const {
    return rate_streams > 0 ? stream_tokens_per_s_sum / rate_streams : 0;
  }
};

struct RunResult {
  std::string label;  // e.g. "concurrency=4"
  RunConfig config;
  std::vector<std::string> workloads;
  double duration_s = 0;
  int64_t sent = 0, succeeded = 0, failed = 0;
  std::map<std::string, int64_t> codes;  // "OK", "DEADLINE_EXCEEDED", ...
  // The first message seen with each failing code (the server's reason).
  std::map<std::string, std::string> first_errors;
  Histogram latency;                     // ns, successful requests
  // ns, the server's own timing.compute_us of successful Attend/Forward
  // calls (empty for other kinds): latency ÷ this is the RPC layer's cost.
  Histogram server_compute;
  double tokens = 0, flops = 0;          // served by successful requests
  std::vector<SecondStats> series;
  std::optional<DecodeStats> decode;  // decode runs only

  double tokens_per_s() const { return duration_s > 0 ? tokens / duration_s : 0; }

  double rps() const { return duration_s > 0 ? succeeded / duration_s : 0; }
};

absl::StatusOr<RunResult> RunLoad(const RunConfig& config, const std::vector<Workload>& workloads);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_RUNNER_H_
