// Streaming decode: chunks through a paged KV cache equal one causal Forward
// over their concatenation, for every variant; the block budget is honoured.
#include "core/decode.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "core/internal/kernels.h"
#include "core/paged_attention.h"
#include "core/sdpa.h"
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
  EXPECT_EQ(CacheLayout(c).BytesPerToken(), KvCacheBytesPerToken(c));
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

// Each cache dtype, every variant: the chunks' outputs against the float32
// Forward (to the dtype's accuracy: rows rounded to bf16 or f16, or
// quantised to int8), and the kernels over the stored rows against dense
// float32 attention over the same rounded rows (to float32 rounding), with
// each ISA's kernels this CPU has.
TEST(Decode, EveryCacheDtypeMatchesForwardToItsAccuracy) {
  const std::pair<DType, double> dtypes[] = {
      {DType::kBfloat16, 1e-2}, {DType::kFloat16, 2e-3}, {DType::kInt8, 2e-2}};
  for (Variant v :
       {Variant::kSelfAttention, Variant::kMha, Variant::kGqa, Variant::kMqa, Variant::kMla}) {
    SCOPED_TRACE(VariantFieldName(v));
    std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(Make(v), 5);
    const Tensor x = RandomTensor({2, 150, 128}, 9);
    ForwardInput in;
    in.query = &x;
    in.mask.causal = true;
    auto full = m->Forward(in);
    ASSERT_OK(full);
    for (const auto& [dtype, tolerance] : dtypes) {
      SCOPED_TRACE(DTypeName(dtype));
      auto pool = KvBlockPool::Create(1 << 24, 16 << 10);
      ASSERT_OK(pool);
      auto session = DecodeSession::Create(m, 2, 0, dtype, pool->get());
      ASSERT_OK(session);
      int64_t t0 = 0;
      for (int64_t n : {70, 1, 1, 3, 9, 66}) {  // decode and GEMM paths, sealed and not
        auto step = (*session)->Step(Slice(x, t0, n));
        ASSERT_OK(step);
        EXPECT_LT(RelError(step->output, Slice(full->output, t0, n)), tolerance) << t0;
        t0 += n;
      }
      EXPECT_EQ((*session)->kv_cache_bytes(), 2 * 150 * KvCacheBytesPerToken(m->config(), dtype));
    }
  }
}

// bf16 compute rounds what Decode caches to bf16 already, so a float32 or
// bf16 cache holds it exactly and the stream equals the bf16 Forward (mla:
// its absorbed form, which rounds where Decode does) up to the summation
// order, which a later rounding to bf16 (the output projection's input) can
// turn into a bf16 step on a few elements: 1e-3 (both round the
// probabilities to bf16 before P·V, before their division by the row's
// sum). The narrower caches stay within their own bounds. The bf16 layer
// stays within 1e-2 of the float32 one.
TEST(Decode, Bf16ComputeStreamsEqualTheBf16Forward) {
  const std::pair<DType, double> dtypes[] = {{DType::kFloat32, 1e-3},
                                             {DType::kBfloat16, 1e-3},
                                             {DType::kFloat16, 2e-3},
                                             {DType::kInt8, 2e-2}};
  for (Variant v :
       {Variant::kSelfAttention, Variant::kMha, Variant::kGqa, Variant::kMqa, Variant::kMla}) {
    SCOPED_TRACE(VariantFieldName(v));
    ModuleConfig config = Make(v);
    config.compute_dtype = DType::kBfloat16;
    std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(config, 5);
    std::shared_ptr<const AttentionModule> f32 = *AttentionModule::CreateRandom(Make(v), 5);
    const Tensor x = RandomTensor({2, 150, 128}, 9);
    ForwardInput in;
    in.query = &x;
    in.mask.causal = true;
    auto full = m->Forward(in);
    ASSERT_OK(full);
    auto full_f32 = f32->Forward(in);
    ASSERT_OK(full_f32);
    EXPECT_LT(RelError(full->output, full_f32->output), 1e-2);
    EXPECT_GT(RelError(full->output, full_f32->output), 1e-6);
    in.mla_form = MlaForm::kAbsorbed;
    full = m->Forward(in);
    ASSERT_OK(full);
    for (const auto& [dtype, tolerance] : dtypes) {
      SCOPED_TRACE(DTypeName(dtype));
      auto pool = KvBlockPool::Create(1 << 24, 16 << 10);
      ASSERT_OK(pool);
      auto session = DecodeSession::Create(m, 2, 0, dtype, pool->get());
      ASSERT_OK(session);
      int64_t t0 = 0;
      for (int64_t n : {70, 1, 1, 3, 9, 66}) {
        auto step = (*session)->Step(Slice(x, t0, n));
        ASSERT_OK(step);
        EXPECT_LT(RelError(step->output, Slice(full->output, t0, n)), tolerance) << t0;
        t0 += n;
      }
    }
  }
}

TEST(Decode, PagedAttentionReadsEveryCacheDtypeAsItsStoredRows) {
  // 2 rows × 2 kv heads of 40 (odd widths for the kernels' tails), 8 query
  // heads, 150 tokens in blocks that hold 25 tokens of all lanes (100 head
  // rows): a sealed chunk of 100 tokens and 50 in the token-major one.
  const int64_t batch = 2, hkv = 2, hq = 8, d = 40, lk = 150;
  const std::string previous = internal::Kernels().isa;
  for (const char* isa : {"avx2", "avx512"}) {
    if (!internal::SelectKernels(isa)) continue;
    SCOPED_TRACE(isa);
    for (DType dtype : {DType::kFloat32, DType::kBfloat16, DType::kFloat16, DType::kInt8}) {
      SCOPED_TRACE(DTypeName(dtype));
      KvLayout layout;
      layout.heads = hkv;
      layout.k_width = layout.v_width = d;
      layout.dtype = dtype;
      auto pool =
          KvBlockPool::Create(1 << 22, 25 * batch * hkv * layout.HeadRowBytes() / 64 * 64 + 64);
      ASSERT_OK(pool);
      auto cache = PagedKvCache::Create(layout, batch, 0, pool->get());
      ASSERT_OK(cache);
      PagedKvCache& c = **cache;
      ASSERT_EQ(c.plan().rows_per_block, 100);
      ASSERT_OK(c.Reserve(lk));
      ASSERT_EQ(c.sealed_tokens(), 100);
      const Tensor k = RandomTensor({batch, hkv, lk, d}, 1),
                   v = RandomTensor({batch, hkv, lk, d}, 2);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t h = 0; h < hkv; ++h)
          for (int64_t t = 0; t < lk; ++t) {
            c.StoreK(b, h, t, k.data() + ((b * hkv + h) * lk + t) * d);
            c.StoreV(b, h, t, v.data() + ((b * hkv + h) * lk + t) * d);
          }
      c.Advance(lk);
      Tensor ks({batch, hkv, lk, d}), vs({batch, hkv, lk, d});  // the stored rows, as float32
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t h = 0; h < hkv; ++h)
          for (int64_t t = 0; t < lk; ++t) {
            c.LoadK(b, h, t, ks.data() + ((b * hkv + h) * lk + t) * d);
            c.LoadV(b, h, t, vs.data() + ((b * hkv + h) * lk + t) * d);
          }
      for (int64_t t_new : {1, 2, 12}) {  // decode rows, and the GEMM path
        SCOPED_TRACE(t_new);
        const Tensor q = RandomTensor({batch, hq, t_new, d}, 3);
        Tensor out({batch, hq, t_new, d}), want({batch, hq, t_new, d});
        ASSERT_OK(PagedSdpa(View4::Dense(q.data(), batch, hq, t_new, d), c, 0.15f,
                            MutView4::Dense(out.data(), batch, hq, t_new, d)));
        MaskSpec causal;
        causal.causal = true;
        ASSERT_OK(Sdpa(View4::Dense(q.data(), batch, hq, t_new, d),
                       View4::Dense(ks.data(), batch, hkv, lk, d),
                       View4::Dense(vs.data(), batch, hkv, lk, d), causal, 0.15f,
                       MutView4::Dense(want.data(), batch, hq, t_new, d), nullptr));
        EXPECT_LT(RelError(out, want), 1e-5);
      }
    }
  }
  internal::SelectKernels(previous.c_str());
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

// A gqa layer with a sliding window of W = 128 keys, 2 rows, 16 KiB blocks
// (128 head rows; chunks of 64 tokens, so a window spans two or three): a
// stream of 10·W tokens, a few chunks (some longer than W), then one token
// at a time, equals one windowed causal Forward over the whole sequence at
// every step, holds at most WindowBlocks(W, 0) blocks after each, reserves
// nothing past its own reservation, and its working bytes stop growing.
TEST(Decode, AWindowedStreamHoldsItsWindowAndMatchesForward) {
  ModuleConfig c = Make(Variant::kGqa);
  const int64_t w = 128, len = 10 * w;
  c.sliding_window = w;
  std::shared_ptr<const AttentionModule> m = *AttentionModule::CreateRandom(c, 11);
  const Tensor x = RandomTensor({2, len, 128}, 12);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  auto full = m->Forward(in);
  ASSERT_OK(full);
  std::vector<int64_t> chunks = {100, 1, 1, 64, 3, 200, 70, 5, 1, 130};
  for (int64_t t = 575; t < len; ++t) chunks.push_back(1);
  // max_tokens 0 (a reservation of one token's block) and 10·W (capped at
  // the window's).
  for (const int64_t max_tokens : {int64_t{0}, len}) {
    SCOPED_TRACE(max_tokens);
    auto pool = KvBlockPool::Create(1 << 24, 16 << 10);
    ASSERT_OK(pool);
    auto session = DecodeSession::Create(m, 2, max_tokens, pool->get());
    ASSERT_OK(session);
    const PagedKvCache& cache = (*session)->cache();
    const KvBlockPlan& plan = cache.plan();
    ASSERT_EQ(plan.chunk_tokens, 64);
    const int64_t own = max_tokens == 0 ? 1 : plan.WindowBlocks(w, 64);
    EXPECT_EQ((*pool)->used_blocks(), own);
    const int64_t row_bytes = cache.layout().HeadRowBytes();
    int64_t t0 = 0, most = 0, working = 0;
    for (int64_t n : chunks) {
      auto step = (*session)->Step(Slice(x, t0, n));
      ASSERT_OK(step);
      ASSERT_LT(RelError(step->output, Slice(full->output, t0, n)), 1e-4) << t0 << "+" << n;
      t0 += n;
      EXPECT_EQ((*session)->cached_tokens(), t0);
      EXPECT_EQ(cache.first_kept(), std::max<int64_t>(0, t0 - w + 1));
      ASSERT_LE(cache.blocks_held(), plan.WindowBlocks(w, 0)) << t0;
      ASSERT_EQ((*pool)->used_blocks(), std::max(cache.blocks_held(), own)) << t0;
      most = std::max(most, cache.blocks_held());
      // What is held, not what was appended: at least the window's W - 1
      // tokens, at most the blocks'.
      EXPECT_EQ((*session)->kv_cache_bytes(), cache.head_rows_held() * row_bytes);
      EXPECT_GE((*session)->kv_cache_bytes(),
                std::min(t0, w - 1) * 2 * KvCacheBytesPerToken(c));
      EXPECT_LE((*session)->kv_cache_bytes(),
                cache.blocks_held() * plan.rows_per_block * row_bytes);
      if (t0 >= 2 * w) {  // the scores span the window, wherever the stream is
        if (working == 0) working = (*session)->StepWorkingBytes(1);
        ASSERT_EQ((*session)->StepWorkingBytes(1), working) << t0;
      }
    }
    EXPECT_EQ(t0, len);
    EXPECT_GT(working, 0);
    EXPECT_LT(most, plan.BlocksFor(len) / 4);
    session->reset();
    EXPECT_EQ((*pool)->used_blocks(), 0);
  }
}

TEST(Decode, PagedAttentionRefusesTokensTheCacheDropped) {
  KvLayout layout;
  layout.heads = 1;
  layout.k_width = layout.v_width = 8;
  auto pool = KvBlockPool::Create(1 << 20, 4096);
  ASSERT_OK(pool);
  auto cache = PagedKvCache::Create(layout, 1, 0, pool->get());
  ASSERT_OK(cache);
  PagedKvCache& c = **cache;
  ASSERT_OK(c.Reserve(200));
  const Tensor kv = RandomTensor({200, 8}, 1);
  for (int64_t t = 0; t < 200; ++t) {
    c.StoreK(0, 0, t, kv.data() + t * 8);
    c.StoreV(0, 0, t, kv.data() + t * 8);
  }
  c.Advance(200);
  c.DropBefore(150);
  const Tensor q = RandomTensor({1, 1, 1, 8}, 2);
  Tensor out({1, 1, 1, 8});
  const View4 qv = View4::Dense(q.data(), 1, 1, 1, 8);
  const MutView4 ov = MutView4::Dense(out.data(), 1, 1, 1, 8);
  // The last token with a window of 50 sees 150 .. 199: kept.
  EXPECT_OK(PagedSdpa(qv, c, 0.3f, ov, DType::kFloat32, 50));
  const absl::Status wider = PagedSdpa(qv, c, 0.3f, ov, DType::kFloat32, 51);
  EXPECT_EQ(wider.code(), absl::StatusCode::kInternal) << wider;
  EXPECT_TRUE(absl::StrContains(wider.message(), "dropped")) << wider;
  EXPECT_EQ(PagedSdpa(qv, c, 0.3f, ov).code(), absl::StatusCode::kInternal);
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
