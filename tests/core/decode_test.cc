// Streaming decode: chunks through a paged KV cache equal one causal Forward
// over their concatenation, for every variant; the block budget is honoured.
#include "core/decode.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

struct DecodeCase {
  std::string name;
  ModuleConfig config;
};

void PrintTo(const DecodeCase& c, std::ostream* os) { *os << c.name; }

ModuleConfig Make(Variant v) {
  ModuleConfig c;
  c.variant = v;
  c.d_model = 128;
  switch (v) {
    case Variant::kSelfAttention:
      c.d_k = 48;
      c.d_v = 80;
      break;
    case Variant::kMha:
      c.num_heads = 4;
      break;
    case Variant::kGqa:
      c.num_heads = 8;
      c.num_kv_heads = 2;
      break;
    case Variant::kMqa:
      c.num_heads = 8;
      break;
    case Variant::kMla:
      c.num_heads = 4;
      c.q_lora_rank = 48;
      c.kv_lora_rank = 64;
      c.qk_nope_head_dim = 16;
      c.qk_rope_head_dim = 8;
      c.v_head_dim = 16;
      break;
  }
  return c;
}

class DecodeVariants : public testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeVariants, ChunksEqualOneCausalForward) {
  const ModuleConfig& c = GetParam().config;
  auto module = AttentionModule::CreateRandom(c, 3);
  ASSERT_OK(module);
  std::shared_ptr<const AttentionModule> m = std::move(*module);
  const int64_t chunks[] = {5, 1, 1, 3, 1};
  const Tensor x = RandomTensor({2, 11, c.d_model}, 7);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  auto full = m->Forward(in);
  ASSERT_OK(full);

  // 1 KiB blocks: chunks cross block boundaries and the first chunk of
  // tokens seals within the 11. 9 KiB: rows that do not tile a block.
  for (int64_t block : {1024, 9 << 10}) {
    SCOPED_TRACE(block);
    auto pool = KvBlockPool::Create(1 << 20, block);
    ASSERT_OK(pool);
    auto session = DecodeSession::Create(m, 2, /*max_tokens=*/11, pool->get());
    ASSERT_OK(session);
    if (block == 1024) {
      EXPECT_LT((*session)->cache().plan().chunk_tokens, 11);
    }
    int64_t t0 = 0;
    const int64_t out_dim = OutputDim(c);
    for (int64_t n : chunks) {
      auto step = (*session)->Step(Slice(x, t0, n));
      ASSERT_OK(step);
      const Tensor want = Slice(full->output, t0, n);
      EXPECT_EQ(step->output.shape(), (std::vector<int64_t>{2, n, out_dim}));
      EXPECT_LT(RelError(step->output, want), 1e-4) << "chunk at " << t0;
      t0 += n;
      EXPECT_EQ((*session)->cached_tokens(), t0);
      EXPECT_EQ((*session)->kv_cache_bytes(), t0 * 2 * KvCacheBytesPerToken(c));
      EXPECT_GT(step->flops, 0);
    }
    EXPECT_GT((*pool)->used_blocks(), 0);
    session->reset();
    EXPECT_EQ((*pool)->used_blocks(), 0);  // every block back in the budget
  }
  EXPECT_EQ(CacheLayout(c).FloatsPerToken() * 4, KvCacheBytesPerToken(c));
}

TEST(Decode, LongChunksMatchForwardToo) {
  // Chunks of 9 and 12 tokens: query tiles large enough for the GEMM path.
  for (Variant v : {Variant::kMha, Variant::kGqa, Variant::kMla}) {
    SCOPED_TRACE(VariantFieldName(v));
    std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(Make(v), 9);
    auto pool = KvBlockPool::Create(1 << 22, 1024);
    ASSERT_OK(pool);
    auto session = DecodeSession::Create(m, 1, 0, pool->get());
    ASSERT_OK(session);
    const Tensor x = RandomTensor({1, 22, 128}, 8);
    ForwardInput in;
    in.query = &x;
    in.mask.causal = true;
    auto full = m->Forward(in);
    ASSERT_OK(full);
    int64_t t0 = 0;
    for (int64_t n : {9, 12, 1}) {
      auto step = (*session)->Step(Slice(x, t0, n));
      ASSERT_OK(step);
      EXPECT_LT(RelError(step->output, Slice(full->output, t0, n)), 1e-4) << t0;
      t0 += n;
    }
  }
}

TEST(Decode, StreamsPastSeveralSealedChunksMatchForward) {
  // 64 KiB blocks: chunks of 64 tokens (mla: of a block's latent rows),
  // sealed as the stream passes them, one token or several at a time.
  for (Variant v : {Variant::kMha, Variant::kGqa, Variant::kMla}) {
    SCOPED_TRACE(VariantFieldName(v));
    std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(Make(v), 4);
    auto pool = KvBlockPool::Create(1 << 24, 64 << 10);
    ASSERT_OK(pool);
    auto session = DecodeSession::Create(m, 2, 0, pool->get());
    ASSERT_OK(session);
    const Tensor x = RandomTensor({2, 200, 128}, 6);
    ForwardInput in;
    in.query = &x;
    in.mask.causal = true;
    auto full = m->Forward(in);
    ASSERT_OK(full);
    std::vector<int64_t> chunks = {70, 50};
    for (int i = 0; i < 15; ++i) chunks.push_back(1);
    chunks.push_back(65);
    int64_t t0 = 0;
    for (int64_t n : chunks) {
      auto step = (*session)->Step(Slice(x, t0, n));
      ASSERT_OK(step);
      EXPECT_LT(RelError(step->output, Slice(full->output, t0, n)), 1e-4) << t0;
      t0 += n;
    }
    EXPECT_EQ(t0, 200);
    EXPECT_GT((*session)->cache().sealed_tokens(), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, DecodeVariants,
                         testing::Values(DecodeCase{"SelfAttention", Make(Variant::kSelfAttention)},
                                         DecodeCase{"Mha", Make(Variant::kMha)},
                                         DecodeCase{"Gqa", Make(Variant::kGqa)},
                                         DecodeCase{"Mqa", Make(Variant::kMqa)},
                                         DecodeCase{"Mla", Make(Variant::kMla)}),
                         [](const auto& p) { return p.param.name; });

TEST(Decode, OverBudgetFailsAndLeavesTheCacheUnchanged) {
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(Make(Variant::kMha), 1);
  // MHA d_model 128, 4 heads: 256 bytes per token and head, so a 1 KiB
  // block holds one token of the row's 4 heads; 8 blocks hold 8 tokens.
  auto pool = KvBlockPool::Create(8192, 1024);
  ASSERT_OK(pool);
  auto a = DecodeSession::Create(m, 1, 0, pool->get());
  ASSERT_OK(a);
  ASSERT_OK((*a)->Step(RandomTensor({1, 6, 128}, 1)));
  auto over = (*a)->Step(RandomTensor({1, 3, 128}, 2));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_TRUE(absl::StrContains(over.status().message(), "--kv_cache_mb")) << over.status();
  EXPECT_EQ((*a)->cached_tokens(), 6);
  EXPECT_EQ((*pool)->used_blocks(), 6);                 // the failed growth reserved nothing
  ASSERT_OK((*a)->Step(RandomTensor({1, 2, 128}, 3)));  // still fits exactly
  // A start reserves its first token (one block here): none left.
  auto b = DecodeSession::Create(m, 1, 0, pool->get());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted) << b.status();
  a->reset();
  b = DecodeSession::Create(m, 1, 0, pool->get());  // a's blocks came back
  ASSERT_OK(b);
  EXPECT_OK((*b)->Step(RandomTensor({1, 1, 128}, 4)));
}

// demo-mha of the server: d_model 512, 8 heads of 64 (4 KiB per token).
ModuleConfig DemoMha() {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = 512;
  c.num_heads = 8;
  return c;
}

TEST(Decode, OneTokenOfAShortStreamTakesOneBlock) {
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(DemoMha(), 1);
  auto pool = KvBlockPool::Create(1 << 20, 64 << 10);
  ASSERT_OK(pool);
  auto s = DecodeSession::Create(m, 1, /*max_tokens=*/16, pool->get());
  ASSERT_OK(s);
  ASSERT_OK((*s)->Step(RandomTensor({1, 1, 512}, 1)));
  EXPECT_EQ((*s)->cache().blocks_held(), 1);  // not one block per head
  EXPECT_EQ((*pool)->used_blocks(), 1);
}

TEST(Decode, StartReservesMaxTokensSoAnAcceptedStreamIsNeverRefused) {
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(DemoMha(), 1);
  // 4 MiB (--kv_cache_mb=4): 64 blocks of 64 KiB, each 16 tokens of 8 heads.
  auto pool = KvBlockPool::Create(4 << 20, 64 << 10);
  ASSERT_OK(pool);
  auto too_long = DecodeSession::Create(m, 1, 2000, pool->get());  // 8 MB
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kResourceExhausted) << too_long.status();
  EXPECT_TRUE(absl::StrContains(too_long.status().message(), "need 125 blocks"))
      << too_long.status();
  EXPECT_TRUE(absl::StrContains(too_long.status().message(), "64 of the server's 64"))
      << too_long.status();
  EXPECT_TRUE(absl::StrContains(too_long.status().message(), "--kv_cache_mb")) << too_long.status();
  EXPECT_EQ((*pool)->used_blocks(), 0);

  auto capped = DecodeSession::Create(m, 1, 960, pool->get());  // 60 blocks
  ASSERT_OK(capped);
  EXPECT_EQ((*pool)->used_blocks(), 60);
  auto open = DecodeSession::Create(m, 1, 0, pool->get());  // its first token: 1 block
  ASSERT_OK(open);
  EXPECT_EQ((*pool)->used_blocks(), 61);
  // The unlimited stream grows into the rest, and is refused past it.
  ASSERT_OK((*open)->Step(RandomTensor({1, 64, 512}, 2)));
  EXPECT_EQ((*open)->Step(RandomTensor({1, 1, 512}, 3)).status().code(),
            absl::StatusCode::kResourceExhausted);
  // The capped stream still reaches its max_tokens.
  for (int i = 0; i < 4; ++i) ASSERT_OK((*capped)->Step(RandomTensor({1, 240, 512}, 4 + i)));
  EXPECT_EQ((*capped)->cached_tokens(), 960);
}

TEST(Decode, AbsurdBatchIsRefusedAtStartByTheBudget) {
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(DemoMha(), 1);
  auto pool = KvBlockPool::Create(1 << 30, 64 << 10);
  ASSERT_OK(pool);
  auto s = DecodeSession::Create(m, int64_t{1} << 20, 0, pool->get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "start: kv cache: 1048576 rows x 1 tokens"))
      << s.status();
  EXPECT_EQ((*pool)->used_blocks(), 0);
}

TEST(Decode, HeadTokenLargerThanABlockIsRefusedAtStartNamingTheFlag) {
  ModuleConfig c = DemoMha();
  c.num_heads = 1;  // one head of 512: 4 KiB per token
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(c, 1);
  auto pool = KvBlockPool::Create(1 << 20, 2048);
  ASSERT_OK(pool);
  auto s = DecodeSession::Create(m, 1, 0, pool->get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
  EXPECT_TRUE(absl::StrContains(s.status().message(), "--kv_block_kb")) << s.status();
}

TEST(Decode, StepWorkingBytesCoversTheOutputGrowsWithTheChunkAndSaturates) {
  for (Variant v : {Variant::kSelfAttention, Variant::kMha, Variant::kGqa, Variant::kMla}) {
    SCOPED_TRACE(VariantFieldName(v));
    const ModuleConfig c = Make(v);
    std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(c, 1);
    auto pool = KvBlockPool::Create(1 << 20, 4096);
    ASSERT_OK(pool);
    auto s = DecodeSession::Create(m, 2, 0, pool->get());
    ASSERT_OK(s);
    const int64_t one = (*s)->StepWorkingBytes(1);
    EXPECT_GE(one, 2 * OutputDim(c) * 4);
    EXPECT_GT((*s)->StepWorkingBytes(8), one);
    ASSERT_OK((*s)->Step(RandomTensor({2, 8, 128}, 1)));
    EXPECT_GT((*s)->StepWorkingBytes(1), one);  // the scores grow with the cache
    EXPECT_EQ((*s)->StepWorkingBytes(INT64_MAX / 2), INT64_MAX);
  }
}

TEST(Decode, MaxTokensAndShapesAreChecked) {
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(Make(Variant::kGqa), 1);
  auto pool = KvBlockPool::Create(1 << 20, 4096);
  ASSERT_OK(pool);
  auto s = DecodeSession::Create(m, 2, 4, pool->get());
  ASSERT_OK(s);
  ASSERT_OK((*s)->Step(RandomTensor({2, 3, 128}, 1)));
  auto past = (*s)->Step(RandomTensor({2, 2, 128}, 2));
  EXPECT_EQ(past.status().code(), absl::StatusCode::kFailedPrecondition) << past.status();
  auto shape = (*s)->Step(RandomTensor({1, 1, 128}, 2));
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(shape.status().message(), "tokens: expected [B = 2"))
      << shape.status();
  EXPECT_EQ(DecodeSession::Create(m, 0, 0, pool->get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attention
