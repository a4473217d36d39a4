// The one admission path: a Decode chunk is a computing call like a unary
// one — counted in flight, bounded by the request memory budget, stopped by
// its deadline — and every call leaves the counters as it found them.
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;

// Codes counted for `method` in GetServerInfo (empty when none).
std::map<std::string, int64_t> Codes(client::AttentionClient& client, const std::string& method) {
  auto info = client.GetServerInfo();
  EXPECT_TRUE(info.ok()) << info.status();
  if (!info.ok()) return {};
  for (const pb::MethodStats& m : info->methods()) {
    if (m.method() == method) return {m.codes().begin(), m.codes().end()};
  }
  return {};
}

class SlowChunkTest : public ServerTest {
 protected:
  void Customize(server::ServerOptions& options) override {
    options.service.test_delay_ms = static_cast<int>(400 * kSlowdown);
  }
};

TEST_F(SlowChunkTest, DecodeChunkIsCountedInFlightUntilItsAnswer) {
  auto stream = client_->StartDecode("demo-gqa", 1);
  ASSERT_OK(stream);
  std::thread step([&] { EXPECT_OK((*stream)->Step(RandomTensor({1, 2, 512}, 1))); });
  int seen = 0;
  for (int i = 0; i < 200 && seen == 0; ++i) {
    auto info = client_->GetServerInfo();
    ASSERT_OK(info);
    seen = info->load().inflight_requests();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(seen, 1) << "the chunk never showed in load.inflight_requests";
  step.join();
  auto after = client_->GetServerInfo();
  ASSERT_OK(after);
  EXPECT_EQ(after->load().inflight_requests(), 0);
  EXPECT_EQ(after->load().reserved_memory_bytes(), 0);
  EXPECT_EQ(Codes(*client_, "DecodeChunk")["OK"], 1);
  ASSERT_OK((*stream)->Close());
  EXPECT_EQ(Codes(*client_, "Decode")["OK"], 1);
}

TEST_F(ServerTest, DecodeChunkStopsAtTheStreamsDeadline) {
  // Much compute for few bytes: 8192 tokens of 8 floats (256 KiB) attend
  // causally through 8192-wide keys, hundreds of GFLOP.
  pb::ModuleConfig wide;
  wide.set_d_model(8);
  wide.mutable_self_attention()->set_d_k(8192);
  wide.mutable_self_attention()->set_d_v(4);
  ASSERT_OK(client_->LoadModule("wide", wide));
  client::ClientOptions options;
  options.timeout = absl::Milliseconds(500 * kSlowdown);
  auto short_lived = client::AttentionClient::Connect(address(), options);
  ASSERT_OK(short_lived);
  auto stream = (*short_lived)->StartDecode("wide", 1);
  ASSERT_OK(stream);
  auto r = (*stream)->Step(RandomTensor({1, 8192, 8}, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  // The chunk was stopped, not finished and then dropped: its ticket
  // records the deadline.
  std::map<std::string, int64_t> codes;
  for (int i = 0; i < 2000 && codes.empty(); ++i) {
    codes = Codes(*client_, "DecodeChunk");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(codes["DEADLINE_EXCEEDED"], 1);
  EXPECT_EQ(codes["OK"], 0);
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  EXPECT_EQ(info->load().inflight_requests(), 0);
  EXPECT_EQ(info->load().reserved_memory_bytes(), 0);
}

class SmallRequestMemory : public ServerTest {
 protected:
  void Customize(server::ServerOptions& options) override {
    options.service.request_memory_bytes = 8 << 20;
  }
};

TEST_F(SmallRequestMemory, DecodeChunkReservesFromTheRequestMemoryBudget) {
  auto stream = client_->StartDecode("demo-gqa", 1);
  ASSERT_OK(stream);
  ASSERT_OK((*stream)->Step(RandomTensor({1, 4, 512}, 1)));  // small: admitted
  auto big = (*stream)->Step(RandomTensor({1, 2048, 512}, 2));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  EXPECT_TRUE(absl::StrContains(big.status().message(), "--request_memory_mb")) << big.status();
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  EXPECT_EQ(info->load().reserved_memory_bytes(), 0);
  EXPECT_EQ(Codes(*client_, "DecodeChunk")["RESOURCE_EXHAUSTED"], 1);
}

}  // namespace
}  // namespace attention
