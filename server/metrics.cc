#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

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

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, int port, std::function<std::string()> render) {
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer);
  s->render_ = std::move(render);
  s->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->fd_ < 0) return absl::InternalError("metrics: socket() failed");
  int one = 1;
  ::setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    ::close(s->fd_);
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_address: expected an IPv4 address, got '", address, "'"));
  }
  if (::bind(s->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(s->fd_, 16) != 0) {
    ::close(s->fd_);
    return absl::UnavailableError(
        absl::StrCat("metrics_port: cannot listen on ", address, ":", port, ": ", strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(s->fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  s->port_ = ntohs(addr.sin_port);
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

void MetricsHttpServer::Loop() {
  while (!stop_) {
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    timeval tv{2, 0};
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[2048];
    const ssize_t n = ::recv(conn, buf, sizeof(buf) - 1, 0);
    std::string response;
    if (n > 0 && std::strncmp(buf, "GET /metrics", 12) == 0) {
      const std::string body = render_();
      response = absl::StrCat(
          "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: ",
          body.size(), "\r\nConnection: close\r\n\r\n", body);
    } else {
      response = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    }
    size_t sent = 0;
    while (sent < response.size()) {
      const ssize_t w = ::send(conn, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) break;
      sent += static_cast<size_t>(w);
    }
    ::close(conn);
  }
}

}  // namespace attention::server
