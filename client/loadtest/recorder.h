// The load tester's tally of one phase: every outcome, as the runner's
// threads report it, gathered into a RunResult. Private to runner.cc.
#ifndef ATTENTION_CLIENT_LOADTEST_RECORDER_H_
#define ATTENTION_CLIENT_LOADTEST_RECORDER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "client/loadtest/histogram.h"
#include "client/loadtest/runner.h"
#include "client/loadtest/workload.h"

namespace attention::loadtest {

// Thread-safe collection of one phase's outcomes. A disabled recorder (a
// warm-up) records nothing.
class Recorder {
 public:
  using Clock = std::chrono::steady_clock;

  // `decode`: the result carries DecodeStats (with reused_tokens when
  // `reused` is set). Seconds of the series count from `start`.
  Recorder(Clock::time_point start, bool enabled, bool decode, bool reused);

  // A request of `w` sent at `from` ends now with `code` ("OK", or a status
  // code's name); `message` is a failure's reason, `server_compute_us` the
  // server's own compute time (-1: not reported).
  void Record(Clock::time_point from, const std::string& code, const std::string& message,
              const Workload& w, int64_t server_compute_us = -1);

  // Decode (the recorder was made with `decode`): a stream's prompt answered
  // after `ns`, `reused` of its tokens found in the server's prefix cache.
  void RecordFirstToken(int64_t ns, int64_t reused);
  // Decode: `ns` between two successive step responses of a stream.
  void RecordInterToken(int64_t ns);
  // Decode: a stream's tokens after its prompt over the time they took.
  void RecordStreamRate(double tokens_per_s);

  int64_t done();    // requests recorded so far
  int64_t errors();  // failed requests recorded so far

  // The result, its duration from `start` to the later of `end` and the
  // last request's end. Call once, after the last Record.
  RunResult Take(Clock::time_point end);

 private:
  struct Second {
    std::unique_ptr<Histogram> hist;
    int64_t errors = 0;
  };
  const Clock::time_point start_;
  const bool enabled_;
  std::mutex mu_;
  RunResult result_;
  std::vector<Second> seconds_;
  Clock::time_point last_;
};

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_RECORDER_H_
