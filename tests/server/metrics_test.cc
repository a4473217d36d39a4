// The Prometheus endpoint and the GetServerInfo section count what happened.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

// A TCP connection to 127.0.0.1:port (-1 if refused) whose reads give up
// after 5 s.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// The whole response to an HTTP/1.0 GET (what arrived within the timeout).
std::string HttpGet(int port, const std::string& path) {
  const int fd = Connect(port);
  if (fd < 0) return "";
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  ::send(fd, request.data(), request.size(), 0);
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return response;
}

class MetricsTest : public ServerTest {
  void Customize(server::ServerOptions& options) override { options.metrics_port = 0; }
};

TEST_F(MetricsTest, PrometheusEndpointCountsCallsByStatusAndShowsGauges) {
  const Tensor q = RandomTensor({1, 4, 3, 8}, 1), k = RandomTensor({1, 2, 5, 8}, 2);
  for (int i = 0; i < 3; ++i) ASSERT_OK(client_->Attend(q, k, k));
  EXPECT_FALSE(client_->Attend(q, k, q).ok());  // value heads differ from key: INVALID_ARGUMENT
  auto stream = client_->StartDecode("demo-gqa", 1);
  ASSERT_OK(stream);
  ASSERT_OK((*stream)->Step(RandomTensor({1, 3, 512}, 3)));

  const int port = server_->metrics_port();
  ASSERT_GT(port, 0);
  const std::string text = HttpGet(port, "/metrics");
  EXPECT_TRUE(absl::StartsWith(text, "HTTP/1.1 200 OK")) << text.substr(0, 200);
  EXPECT_TRUE(absl::StrContains(text, "attention_requests_total{method=\"Attend\",code=\"OK\"} 3"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "attention_request_duration_seconds_count{method=\"Attend\"} 4")) << text;
  EXPECT_TRUE(absl::StrContains(
      text, "attention_request_duration_seconds_bucket{method=\"Attend\",le=\"+Inf\"} 4"));
  EXPECT_TRUE(absl::StrContains(text, "# TYPE attention_kv_cache_blocks_used gauge"));
  EXPECT_FALSE(absl::StrContains(text, "attention_kv_cache_blocks_used 0\n")) << text;  // stream open
  EXPECT_TRUE(absl::StrContains(text, "attention_decode_streams 1\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "attention_inflight_requests"));
  EXPECT_TRUE(absl::StrContains(text, "attention_queued_requests 0\n"));
  EXPECT_TRUE(absl::StartsWith(HttpGet(port, "/other"), "HTTP/1.1 404"));

  ASSERT_OK((*stream)->Close());
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  bool found = false;
  for (const auto& m : info->methods()) {
    if (m.method() == "Attend") {
      found = true;
      EXPECT_EQ(m.codes().at("OK"), 3);
      EXPECT_EQ(m.codes().size(), 2u);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(MetricsTest, IdleConnectionsDoNotHoldUpAScrape) {
  const int port = server_->metrics_port();
  ASSERT_GT(port, 0);
  int idle[5];
  for (int& fd : idle) {
    fd = Connect(port);
    ASSERT_GE(fd, 0);
  }
  // Served one connection at a time, the scrape would wait 2 s per idle
  // connection and miss its 5 s read timeout.
  const std::string text = HttpGet(port, "/metrics");
  EXPECT_TRUE(absl::StartsWith(text, "HTTP/1.1 200 OK")) << text.substr(0, 200);
  EXPECT_TRUE(absl::StrContains(text, "# TYPE attention_kv_cache_blocks_used gauge")) << text;
  for (int fd : idle) ::close(fd);
}

}  // namespace
}  // namespace attention
