#include "client/loadtest/recorder.h"

#include <algorithm>
#include <utility>

namespace attention::loadtest {

Recorder::Recorder(Clock::time_point start, bool enabled, bool decode, bool reused)
    : start_(start), enabled_(enabled) {
  if (decode) {
    result_.decode.emplace();
    if (reused) result_.decode->reused_tokens = 0;
  }
}

void Recorder::Record(Clock::time_point from, const std::string& code,
                      const std::string& message, const Workload& w, int64_t server_compute_us) {
  const Clock::time_point now = Clock::now();
  if (!enabled_) return;
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - from).count();
  const size_t second = static_cast<size_t>(std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::seconds>(now - start_).count()));
  std::lock_guard<std::mutex> lock(mu_);
  ++result_.codes[code];
  while (seconds_.size() <= second) seconds_.emplace_back();
  Second& s = seconds_[second];
  if (code == "OK") {
    ++result_.succeeded;
    result_.latency.Record(ns);
    if (server_compute_us >= 0) result_.server_compute.Record(server_compute_us * 1000);
    result_.tokens += w.tokens;
    result_.flops += w.flops;
    if (s.hist == nullptr) s.hist = std::make_unique<Histogram>();
    s.hist->Record(ns);
  } else {
    ++result_.failed;
    ++s.errors;
    result_.first_errors.emplace(code, message);
  }
  last_ = now;
}

void Recorder::RecordFirstToken(int64_t ns, int64_t reused) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  ++result_.decode->streams;
  result_.decode->ttft.Record(ns);
  if (result_.decode->reused_tokens) *result_.decode->reused_tokens += reused;
}

void Recorder::RecordInterToken(int64_t ns) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  result_.decode->itl.Record(ns);
}

void Recorder::RecordStreamRate(double tokens_per_s) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  result_.decode->stream_tokens_per_s_sum += tokens_per_s;
  ++result_.decode->rate_streams;
}

int64_t Recorder::done() {
  std::lock_guard<std::mutex> lock(mu_);
  return result_.succeeded + result_.failed;
}

int64_t Recorder::errors() {
  std::lock_guard<std::mutex> lock(mu_);
  return result_.failed;
}

RunResult Recorder::Take(Clock::time_point end) {
  std::lock_guard<std::mutex> lock(mu_);
  RunResult r = std::move(result_);
  r.sent = r.succeeded + r.failed;
  r.duration_s = std::chrono::duration<double>(std::max(end, last_) - start_).count();
  for (size_t i = 0; i < seconds_.size(); ++i) {
    SecondStats st;
    st.t = static_cast<double>(i);
    st.errors = seconds_[i].errors;
    if (seconds_[i].hist != nullptr) {
      const Histogram& h = *seconds_[i].hist;
      st.completed = h.count();
      st.p50_ns = h.Percentile(50);
      st.p99_ns = h.Percentile(99);
      st.max_ns = h.max();
    }
    r.series.push_back(st);
  }
  return r;
}

}  // namespace attention::loadtest
