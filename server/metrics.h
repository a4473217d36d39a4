// Server metrics: per-method request counts by status code and latency
// histograms, plus gauges sampled at scrape time; rendered in the Prometheus
// text format and served over plain HTTP (GET /metrics) on --metrics_port.
#ifndef ATTENTION_SERVER_METRICS_H_
#define ATTENTION_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include <mutex>

namespace httplib {
class Server;
}  // namespace httplib

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

// The HTTP endpoint: GET /metrics answers render() as Prometheus text (200),
// any other path 404. Built on cpp-httplib: up to kMetricsConnections
// connections are served at once, each on its own thread, so idle or slow
// clients do not hold up a scrape; a connection silent for 2 s is closed.
class MetricsHttpServer {
 public:
  static constexpr int kMetricsConnections = 8;

  // Listens on address:port (an IPv4 address; port 0: any free port) and
  // serves on its own threads until destroyed. `render` is called on those
  // threads, possibly concurrently. INVALID_ARGUMENT naming metrics_address
  // for a bad address, UNAVAILABLE naming metrics_port if it cannot listen.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, int port, std::function<std::string()> render);
  // Stops listening, finishes the requests being served, and joins.
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  MetricsHttpServer();

  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::atomic<bool> listen_returned_{false};
  std::thread thread_;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_METRICS_H_
