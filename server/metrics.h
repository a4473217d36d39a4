// Server metrics: per-method request counts by status code and latency
// histograms, plus gauges sampled at scrape time; rendered in the Prometheus
// text format and served over plain HTTP (GET /metrics) on --metrics_port.
#ifndef ATTENTION_SERVER_METRICS_H_
#define ATTENTION_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include <mutex>

namespace attention::server {

class Metrics {
 public:
  // Upper bounds (seconds) of the latency histogram buckets.
  static const std::vector<double>& Buckets();

  void Record(const std::string& method, const std::string& code, double seconds);

  struct MethodSnapshot {
    std::map<std::string, int64_t> codes;
    std::vector<int64_t> buckets;  // cumulative counts per bound, then +Inf
    double sum_seconds = 0;
    int64_t count = 0;
  };
  std::map<std::string, MethodSnapshot> Snapshot() const;

  // Prometheus text exposition; `gauges` are (name, help, value) triples.
  std::string Render(const std::vector<std::tuple<std::string, std::string, double>>& gauges) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, MethodSnapshot> methods_ ABSL_GUARDED_BY(mu_);
};

// A minimal HTTP/1.0 server for GET /metrics. Stops and joins in the
// destructor.
class MetricsHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, int port, std::function<std::string()> render);
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  void Loop();

  int fd_ = -1;
  int port_ = 0;
  std::function<std::string()> render_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_METRICS_H_
