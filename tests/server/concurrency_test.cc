// 16 client threads × mixed RPCs against one server for a bounded time: no
// errors, every result correct.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/module.h"
#include "core/sdpa.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

class ConcurrencyTest : public ServerTest {};

TEST_F(ConcurrencyTest, SixteenThreadsOfMixedCallsAllSucceedWithCorrectResults) {
  constexpr int kThreads = 16;
  constexpr auto kDuration = std::chrono::seconds(3);
  constexpr int kMaxIterations = 200;  // per thread: bounded in count too

  // Expected answers, computed by the core in this process.
  const Tensor q = RandomTensor({2, 8, 6, 16}, 1), k = RandomTensor({2, 2, 10, 16}, 2),
               v = RandomTensor({2, 2, 10, 16}, 3);
  MaskSpec mask;
  mask.causal = true;
  const Tensor want_attend = Attend(q, k, v, mask, {}).value().output;
  ModuleConfig gqa;
  gqa.variant = Variant::kGqa;
  gqa.d_model = 64;
  gqa.num_heads = 8;
  gqa.num_kv_heads = 2;
  ASSERT_OK(client_->LoadModule("shared", client::ConfigToProto(gqa), {}, 3));
  const Tensor x = RandomTensor({1, 12, 64}, 4);
  ForwardInput in;
  in.query = &x;
  in.mask = mask;
  const Tensor want_forward =
      AttentionModule::CreateRandom(gqa, 3).value()->Forward(in).value().output;

  std::atomic<int> errors{0}, wrong{0}, calls{0};
  const auto deadline = std::chrono::steady_clock::now() + kDuration;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string own = "thread-" + std::to_string(t);
      for (int i = 0; i < kMaxIterations && std::chrono::steady_clock::now() < deadline; ++i) {
        ++calls;
        switch ((t + i) % 5) {
          case 0: {
            client::AttendOptions o;
            o.mask = mask;
            auto r = client_->Attend(q, k, v, o);
            if (!r.ok()) ++errors;
            else if (RelError(r->output, want_attend) > 1e-5) ++wrong;
            break;
          }
          case 1: {
            client::ForwardOptions o;
            o.mask = mask;
            auto r = client_->Forward("shared", x, o);
            if (!r.ok()) ++errors;
            else if (RelError(r->output, want_forward) > 1e-5) ++wrong;
            break;
          }
          case 2: {
            auto r = client_->ListModules();
            if (!r.ok()) ++errors;
            else if (r->size() < 6) ++wrong;  // demos + shared (+ own modules)
            break;
          }
          case 3: {
            auto r = client_->LoadModule(own, client::ConfigToProto(gqa), {}, 5, true);
            if (!r.ok()) ++errors;
            else if (r->parameter_count() != ParameterCount(gqa)) ++wrong;
            break;
          }
          case 4: {
            auto r = client_->GetServerInfo();
            if (!r.ok()) ++errors;
            else if (r->onednn_version().empty()) ++wrong;
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(calls.load(), kThreads * 5);
  auto modules = client_->ListModules();
  ASSERT_OK(modules);
  EXPECT_EQ(modules->size(), 6u + kThreads);
}

}  // namespace
}  // namespace attention
