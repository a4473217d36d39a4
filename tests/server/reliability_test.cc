// Overload, memory budget and deadlines: excess work is refused at once,
// admitted work is answered correctly, an expired call stops computing and
// gives its memory back.
#include <malloc.h>

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "core/sdpa.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * 4096;
}

class OverloadTest : public ServerTest {
  void Customize(server::ServerOptions& options) override {
    options.service.workers = 1;
    options.service.max_queued = 2;
    // Each call holds the one worker long enough for the others to arrive.
    options.service.test_delay_ms = static_cast<int>(1000 * kSlowdown);
  }
};

TEST_F(OverloadTest, ExcessCallsAreRefusedAtOnceTheRestAnsweredCorrectly) {
  const Tensor q = RandomTensor({1, 4, 6, 16}, 1), k = RandomTensor({1, 2, 6, 16}, 2),
               v = RandomTensor({1, 2, 6, 16}, 3);
  const Tensor want = Attend(q, k, v, {}, {}).value().output;
  constexpr int kCalls = 8;
  std::vector<absl::StatusOr<client::AttendResult>> results(kCalls);
  std::vector<double> seconds(kCalls);
  std::vector<std::thread> threads;
  // The first call takes the worker; then seven arrive together.
  threads.emplace_back([&] { results[0] = client_->Attend(q, k, v); });
  while (true) {
    auto info = client_->GetServerInfo();
    ASSERT_OK(info);
    if (info->load().inflight_requests() == 1 && info->load().queued_requests() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (int i = 1; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      const auto start = std::chrono::steady_clock::now();
      results[i] = client_->Attend(q, k, v);
      seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0, refused = 0;
  for (int i = 0; i < kCalls; ++i) {
    if (results[i].ok()) {
      ++ok;
      EXPECT_LT(RelError(results[i]->output, want), 1e-5);
    } else {
      ++refused;
      EXPECT_EQ(results[i].status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_TRUE(absl::StartsWith(results[i].status().message(), "queue: 2 requests"))
          << results[i].status();
      EXPECT_LT(seconds[i], 0.25 * kSlowdown);  // at once, not after queueing
    }
  }
  EXPECT_EQ(ok, 3);  // one computing + two queued
  EXPECT_EQ(refused, kCalls - 3);
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  EXPECT_EQ(info->load().inflight_requests(), 0);
  EXPECT_EQ(info->limits().max_queued_requests(), 2);
}

class MemoryBudgetTest : public ServerTest {
  void Customize(server::ServerOptions& options) override {
    options.service.request_memory_bytes = int64_t{64} << 20;
    options.service.max_tensor_elements = int64_t{64} << 20;
  }
};

TEST_F(MemoryBudgetTest, RequestOverTheBudgetIsRefusedBeforeAllocation) {
  // Weights of [1, 8, 2048, 2048] floats = 128 MiB, over the 64 MiB budget.
  const Tensor q = RandomTensor({1, 8, 2048, 8}, 1), k = RandomTensor({1, 8, 2048, 8}, 2);
  client::AttendOptions o;
  o.return_weights = true;
  auto r = client_->Attend(q, k, k, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "memory: the request needs about"))
      << r.status();
  o.return_weights = false;  // the same call without weights fits
  EXPECT_OK(client_->Attend(q, k, k, o));
}

TEST_F(ServerTest, ExpiredDeadlineStopsTheComputationAndFreesItsMemory) {
  // ~275 GFLOP (16 MiB per input): about a second of work on 2 cores.
  const Tensor q = RandomTensor({1, 4, 16384, 64}, 1), k = RandomTensor({1, 4, 16384, 64}, 2);
  // Baseline after one complete call of the same shape (primitives built,
  // per-thread buffers grown, gRPC's buffers warm), and its duration: an
  // expired call must end well before the work it would have done.
  const auto full_start = std::chrono::steady_clock::now();
  ASSERT_OK(client_->Attend(q, k, k));
  const double full_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - full_start).count();
  malloc_trim(0);
  const int64_t rss_before = RssBytes();
  client::ClientOptions options;
  options.timeout = absl::Milliseconds(100);
  auto hurried = client::AttentionClient::Connect(address(), options);
  ASSERT_OK(hurried);
  // Five expired calls: a leak of their working sets would accumulate
  // (~64 MiB of inputs and output each, 320 MiB in all); allocator and gRPC
  // buffer retention (measured at 25–55 MiB here) does not grow with it.
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    auto r = (*hurried)->Attend(q, k, k);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
    EXPECT_LT(seconds, 0.6 * full_seconds);
    // The server stops between tiles: its work and reservation end soon
    // after, well before the full computation would have.
    const auto stop_by = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(static_cast<int>(300 * full_seconds));
    while (server_->service().admission().inflight() > 0 && std::chrono::steady_clock::now() < stop_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_EQ(server_->service().admission().inflight(), 0) << "round " << round;
    EXPECT_EQ(server_->service().admission().reserved_memory(), 0);
  }
  if (kSanitized) return;  // shadow memory makes RSS meaningless
  int64_t growth = 0;
  for (int i = 0; i < 100; ++i) {
    malloc_trim(0);
    growth = RssBytes() - rss_before;
    if (growth < (int64_t{96} << 20)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LT(growth, int64_t{96} << 20);
}

}  // namespace
}  // namespace attention
