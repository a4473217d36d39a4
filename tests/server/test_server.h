// A real attention server on a free loopback port for tests, with a client.
#ifndef ATTENTION_TESTS_SERVER_TEST_SERVER_H_
#define ATTENTION_TESTS_SERVER_TEST_SERVER_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/attention_client.h"
#include "server/server.h"

namespace attention {

class ServerTest : public testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.service.log_calls = false;
    options.service.max_tensor_elements = int64_t{4} << 20;
    Customize(options);
    auto s = server::AttentionServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto c = client::AttentionClient::Connect(address());
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
  }
  virtual void Customize(server::ServerOptions& options) {}

  std::string address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  std::unique_ptr<server::AttentionServer> server_;
  std::unique_ptr<client::AttentionClient> client_;
};

}  // namespace attention

#endif  // ATTENTION_TESTS_SERVER_TEST_SERVER_H_
