// Narrow heads through the public decode API: chunks of a self-attention
// module with Dk, Dv of 1..5 through a paged KV cache equal one causal
// Forward over their concatenation (a chunk of 33 tokens with Dv = 1 was
// once INTERNAL: sgemm refused the [K, 1] value block).
#include <gtest/gtest.h>

#include <memory>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/decode.h"
#include "core/kv_cache.h"
#include "core/module.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

class NarrowDecode : public testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(NarrowDecode, ChunksEqualOneCausalForward) {
  const auto& [dk, dv] = GetParam();
  ModuleConfig c;
  c.variant = Variant::kSelfAttention;
  c.d_model = 16;
  c.d_k = dk;
  c.d_v = dv;
  auto module = AttentionModule::CreateRandom(c, 5);
  ASSERT_OK(module);
  std::shared_ptr<const AttentionModule> m = std::move(*module);
  // 1 KiB blocks: 25 (Dk = Dv = 5) to 128 (Dk = Dv = 1) tokens per block,
  // so the chunks cross blocks.
  auto pool = KvBlockPool::Create(1 << 22, 1024);
  ASSERT_OK(pool);
  auto session = DecodeSession::Create(m, 2, 0, pool->get());
  ASSERT_OK(session);

  const int64_t chunks[] = {1, 5, 33, 64, 64, 33};
  const Tensor x = RandomTensor({2, 200, c.d_model}, 7);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  auto full = m->Forward(in);
  ASSERT_OK(full);
  int64_t t0 = 0;
  for (int64_t n : chunks) {
    auto step = (*session)->Step(Slice(x, t0, n));
    ASSERT_OK(step);
    EXPECT_LT(RelError(step->output, Slice(full->output, t0, n)), 1e-4) << "chunk at " << t0;
    t0 += n;
  }
  EXPECT_EQ((*session)->cached_tokens(), t0);
}

INSTANTIATE_TEST_SUITE_P(Sweep, NarrowDecode,
                         testing::Combine(testing::Values(1, 2, 3, 5), testing::Values(1, 2, 3, 5)),
                         [](const auto& p) {
                           return absl::StrCat("Dk", std::get<0>(p.param), "Dv",
                                               std::get<1>(p.param));
                         });

}  // namespace
}  // namespace attention
