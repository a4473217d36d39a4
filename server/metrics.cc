#include "server/metrics.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace attention::server {

const std::vector<double>& Metrics::Buckets() {
  static const std::vector<double>* b = new std::vector<double>{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,     1,      2.5,   5,      10,    30};
  return *b;
}

void Metrics::Record(const std::string& method, const std::string& code, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  MethodSnapshot& m = methods_[method];
  if (m.buckets.empty()) m.buckets.assign(Buckets().size() + 1, 0);
  ++m.codes[code];
  for (size_t i = 0; i < Buckets().size(); ++i) {
    if (seconds <= Buckets()[i]) ++m.buckets[i];
  }
  ++m.buckets.back();  // +Inf
  m.sum_seconds += seconds;
  ++m.count;
}

std::map<std::string, Metrics::MethodSnapshot> Metrics::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return methods_;
}

std::string Metrics::Render(
    const std::vector<std::tuple<std::string, std::string, double>>& gauges) const {
  const auto methods = Snapshot();
  std::string out =
      "# HELP attention_requests_total Requests finished, by method and status code.\n"
      "# TYPE attention_requests_total counter\n";
  for (const auto& [method, m] : methods) {
    for (const auto& [code, n] : m.codes) {
      absl::StrAppendFormat(&out, "attention_requests_total{method=\"%s\",code=\"%s\"} %d\n",
                            method, code, n);
    }
  }
  out +=
      "# HELP attention_request_duration_seconds Request latency on the server, by method.\n"
      "# TYPE attention_request_duration_seconds histogram\n";
  for (const auto& [method, m] : methods) {
    for (size_t i = 0; i < Buckets().size(); ++i) {
      absl::StrAppendFormat(&out,
                            "attention_request_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %d\n",
                            method, Buckets()[i], m.buckets[i]);
    }
    absl::StrAppendFormat(&out,
                          "attention_request_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %d\n"
                          "attention_request_duration_seconds_sum{method=\"%s\"} %.9f\n"
                          "attention_request_duration_seconds_count{method=\"%s\"} %d\n",
                          method, m.buckets.back(), method, m.sum_seconds, method, m.count);
  }
  for (const auto& [name, help, value] : gauges) {
    absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name,
                          name, value);
  }
  return out;
}

MetricsHttpServer::MetricsHttpServer() : http_(std::make_unique<httplib::Server>()) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, int port, std::function<std::string()> render) {
  in_addr parsed{};
  if (::inet_pton(AF_INET, address.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_address: expected an IPv4 address, got '", address, "'"));
  }
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer);
  httplib::Server& http = *s->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kMetricsConnections); };
  http.set_keep_alive_timeout(2);  // an idle connection's wait for a request
  http.set_read_timeout(2, 0);
  http.Get("/metrics", [render = std::move(render)](const httplib::Request&,
                                                   httplib::Response& response) {
    response.set_content(render(), "text/plain; version=0.0.4");
  });
  if (port == 0) {
    s->port_ = http.bind_to_any_port(address);
  } else {
    s->port_ = http.bind_to_port(address, port) ? port : -1;
  }
  if (s->port_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics_port: cannot listen on ", address, ":", port, ": ", strerror(errno)));
  }
  s->thread_ = std::thread([p = s.get()] {
    p->http_->listen_after_bind();
    p->listen_returned_ = true;
  });
  // stop() only acts on a running server: wait until it runs (or gave up).
  while (!http.is_running() && !s->listen_returned_) std::this_thread::yield();
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace attention::server
