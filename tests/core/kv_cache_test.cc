// The block plan, the pool's reservations and the paged cache's addressing.
#include "core/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "core/dtype.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

KvLayout Heads(int64_t heads, int64_t width) {
  KvLayout l;
  l.heads = heads;
  l.k_width = l.v_width = width;
  return l;
}

TEST(PlanKvBlocks, AStreamTakesTheBlocksOfItsBytesWhateverItsLength) {
  // demo-mha: 8 heads of 64 + 64 floats (512 bytes), 64 KiB blocks: 128
  // head rows per block, chunks of 64 tokens.
  auto plan = PlanKvBlocks(Heads(8, 64), 1, 64 << 10);
  ASSERT_OK(plan);
  EXPECT_EQ(plan->lanes, 8);
  EXPECT_EQ(plan->rows_per_block, 128);
  EXPECT_EQ(plan->chunk_tokens, kRunTokens);
  EXPECT_EQ(plan->BlocksFor(0), 0);
  EXPECT_EQ(plan->BlocksFor(1), 1);  // 4 KiB of cache: one block, not one per head
  EXPECT_EQ(plan->BlocksFor(16), 1);
  EXPECT_EQ(plan->BlocksFor(17), 2);
  EXPECT_EQ(plan->BlocksFor(4097), 257);

  // 8 rows of 32 heads of 128 + 128 floats: 64 head rows per block.
  auto large = PlanKvBlocks(Heads(32, 128), 8, 64 << 10);
  ASSERT_OK(large);
  EXPECT_EQ(large->chunk_tokens, 64);
  EXPECT_EQ(large->BlocksFor(4097), 4 * 4097);  // 256 lanes: 4 blocks a token
}

TEST(PlanKvBlocks, ChunksTileABlockOrTakeAllOfIt) {
  // 768-byte head rows in 64 KiB: 85 rows, one run of 85 per block.
  auto odd = PlanKvBlocks(Heads(2, 96), 3, 64 << 10);
  ASSERT_OK(odd);
  EXPECT_EQ(odd->rows_per_block, 85);
  EXPECT_EQ(odd->chunk_tokens, 85);
  // 3 KiB head rows in 4 KiB blocks: one row per block, chunks of 1 token.
  auto wide = PlanKvBlocks(Heads(2, 384), 3, 4096);
  ASSERT_OK(wide);
  EXPECT_EQ(wide->rows_per_block, 1);
  EXPECT_EQ(wide->chunk_tokens, 1);
  EXPECT_EQ(wide->BlocksFor(5), 6 * 5);
  // 64-byte rows in 1 MiB: 16384 rows, chunks of 64.
  auto small = PlanKvBlocks(Heads(1, 8), 1, 1 << 20);
  ASSERT_OK(small);
  EXPECT_EQ(small->chunk_tokens, 64);
}

TEST(PlanKvBlocks, HeadTokenLargerThanABlockIsRefusedNamingTheFlag) {
  auto plan = PlanKvBlocks(Heads(1, 256), 1, 1024);  // 2 KiB per token
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted) << plan.status();
  EXPECT_TRUE(absl::StrContains(plan.status().message(), "--kv_block_kb")) << plan.status();
}

TEST(PlanKvBlocks, BlocksForSaturates) {
  auto plan = PlanKvBlocks(Heads(8, 64), int64_t{1} << 20, 1024);
  ASSERT_OK(plan);
  EXPECT_EQ(plan->BlocksFor(INT64_MAX), INT64_MAX);
}

TEST(KvBlockPool, ReservationsCountWithoutMemoryAndNameTheBudget) {
  auto pool = KvBlockPool::Create(8 * 1024, 1024);
  ASSERT_OK(pool);
  ASSERT_OK((*pool)->Reserve(5, "a"));
  EXPECT_EQ((*pool)->used_blocks(), 5);
  const absl::Status over = (*pool)->Reserve(4, "2 rows x 3 tokens");
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(over.message(), "2 rows x 3 tokens need 4 blocks")) << over;
  EXPECT_TRUE(absl::StrContains(over.message(), "3 of the server's 8")) << over;
  EXPECT_TRUE(absl::StrContains(over.message(), "--kv_cache_mb")) << over;
  EXPECT_EQ((*pool)->used_blocks(), 5);  // a refusal reserves nothing
  (*pool)->Unreserve(5);
  EXPECT_EQ((*pool)->used_blocks(), 0);
}

TEST(PagedKvCache, CreateReservesAndDestructionGivesEverythingBack) {
  auto pool = KvBlockPool::Create(64 * 4096, 4096);
  ASSERT_OK(pool);
  // 2 rows × 2 heads of 8 + 8 floats (64 bytes), max_tokens 16: the 4 lanes
  // share blocks of 64 head rows, 16 tokens.
  auto cache = PagedKvCache::Create(Heads(2, 8), 2, 16, pool->get());
  ASSERT_OK(cache);
  EXPECT_EQ((*cache)->plan().rows_per_block, 64);
  EXPECT_EQ((*cache)->blocks_reserved(), 1);
  EXPECT_EQ((*cache)->blocks_held(), 0);  // no memory until written
  EXPECT_EQ((*pool)->used_blocks(), 1);
  ASSERT_OK((*cache)->Reserve(10));
  EXPECT_EQ((*cache)->blocks_held(), 1);
  EXPECT_EQ((*pool)->used_blocks(), 1);  // drawn from the reservation
  (*cache)->Advance(10);
  ASSERT_OK((*cache)->Reserve(30));  // 40 tokens: 3 blocks, two past the reservation
  EXPECT_EQ((*cache)->blocks_held(), 3);
  EXPECT_EQ((*pool)->used_blocks(), 3);
  cache->reset();
  EXPECT_EQ((*pool)->used_blocks(), 0);
}

TEST(PagedKvCache, ReservationPastTheBudgetIsRefusedBeforeAnyBookkeeping) {
  auto pool = KvBlockPool::Create(4 * 1024, 1024);
  ASSERT_OK(pool);
  auto absurd = PagedKvCache::Create(Heads(8, 8), int64_t{1} << 20, 1, pool->get());
  EXPECT_EQ(absurd.status().code(), absl::StatusCode::kResourceExhausted) << absurd.status();
  EXPECT_TRUE(absl::StrContains(absurd.status().message(), "1048576 rows x 1 tokens"))
      << absurd.status();
  EXPECT_EQ((*pool)->used_blocks(), 0);
}

// What a row of `values` reads back as from a cache of `dtype`: the
// conversion, or for int8 the symmetric absmax / 127 quantisation.
std::vector<float> Stored(DType dtype, std::vector<float> values) {
  if (dtype == DType::kInt8) {
    float absmax = 0;
    for (float v : values) absmax = std::max(absmax, std::fabs(v));
    const float scale = absmax / 127.0f;
    for (float& v : values) v = absmax > 0 ? std::nearbyint(v * (127.0f / absmax)) * scale : 0;
    return values;
  }
  std::vector<uint8_t> bytes(values.size() * DTypeSize(dtype));
  EncodeFromFloat(dtype, values.data(), static_cast<int64_t>(values.size()), bytes.data());
  DecodeToFloat(dtype, bytes.data(), static_cast<int64_t>(values.size()), values.data());
  return values;
}

// Writes tokens in chunks of the given sizes, as a decode session does
// (Reserve, store, Advance), and checks after each that every row stored
// so far still reads back (LoadK / LoadV and through its run), that runs
// cover the rows they claim, and that the cache holds exactly the blocks of
// its bytes.
void WriteAndCheck(KvLayout layout, int64_t batch, int64_t block_bytes,
                   const std::vector<int64_t>& chunks) {
  for (DType dtype : {DType::kFloat32, DType::kBfloat16, DType::kFloat16, DType::kInt8}) {
    SCOPED_TRACE(DTypeName(dtype));
    layout.dtype = dtype;
    auto pool = KvBlockPool::Create(64 << 20, block_bytes);
    ASSERT_OK(pool);
    auto cache = PagedKvCache::Create(layout, batch, 0, pool->get());
    ASSERT_OK(cache);
    PagedKvCache& c = **cache;
    const int64_t heads = layout.heads, kw = layout.k_width, vw = layout.v_width;
    // Distinct rows of varied magnitude: (b, h, t, K or V) in the values.
    auto row = [&](int64_t b, int64_t h, int64_t t, int64_t kv, int64_t width) {
      std::vector<float> r(static_cast<size_t>(width));
      for (int64_t x = 0; x < width; ++x) {
        r[x] = static_cast<float>((((b * heads + h) * 1000 + t) * 2 + kv) % 997 + 1) *
               (x % 2 == 0 ? 0.01f : -0.003f) * static_cast<float>(x + 1);
      }
      return r;
    };
    std::vector<float> got(static_cast<size_t>(std::max(kw, vw)));
    for (int64_t n : chunks) {
      const int64_t l0 = c.length();
      ASSERT_OK(c.Reserve(n));
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t t = l0; t < l0 + n; ++t) {
            c.StoreK(b, h, t, row(b, h, t, 0, kw).data());
            if (!layout.v_in_k) c.StoreV(b, h, t, row(b, h, t, 1, vw).data());
          }
        }
      }
      c.Advance(n);
      const int64_t len = c.length();
      EXPECT_EQ(c.sealed_tokens() % c.plan().chunk_tokens, 0);
      EXPECT_LE(c.sealed_tokens(), len);
      EXPECT_EQ(c.blocks_held(), c.plan().BlocksFor(len)) << len;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t t = 0; t < len; ++t) {
            const std::vector<float> k = Stored(dtype, row(b, h, t, 0, kw));
            c.LoadK(b, h, t, got.data());
            for (int64_t x = 0; x < kw; ++x) {
              ASSERT_EQ(got[x], k[x]) << b << " " << h << " " << t << " " << x;
            }
            const std::vector<float> v = layout.v_in_k ? k : Stored(dtype, row(b, h, t, 1, vw));
            c.LoadV(b, h, t, got.data());
            for (int64_t x = 0; x < vw; ++x) {
              ASSERT_EQ(got[x], v[x]) << b << " " << h << " " << t << " " << x;
            }
          }
          // Runs from every token cover the lane's rows in order.
          for (int64_t t = 0; t < len;) {
            const KvRun k = c.KRun(b, h, t), v = c.VRun(b, h, t);
            ASSERT_GE(k.count, 1);
            ASSERT_EQ(k.count, v.count);
            if (t < c.sealed_tokens()) {  // sealed: contiguous runs
              EXPECT_EQ(k.stride, kw);
            }
            EXPECT_EQ(k.scales != nullptr, dtype == DType::kInt8);
            for (int64_t i = 0; i < k.count && t + i < len; ++i) {
              const int64_t es = DTypeSize(dtype);
              std::vector<float> expect(static_cast<size_t>(kw));
              c.LoadK(b, h, t + i, expect.data());
              RowToFloat(dtype, static_cast<const uint8_t*>(k.data) + i * k.stride * es,
                         k.scales != nullptr ? k.scales[i * k.scale_stride] : 1.0f, kw, got.data());
              ASSERT_EQ(std::vector<float>(got.begin(), got.begin() + kw), expect) << t << "+" << i;
              c.LoadV(b, h, t + i, expect.data());
              RowToFloat(dtype, static_cast<const uint8_t*>(v.data) + i * v.stride * es,
                         v.scales != nullptr ? v.scales[i * v.scale_stride] : 1.0f, vw, got.data());
              ASSERT_EQ(std::vector<float>(got.begin(), got.begin() + vw),
                        std::vector<float>(expect.begin(), expect.begin() + vw))
                  << t << "+" << i;
            }
            t += k.count;
          }
        }
      }
    }
  }
}

TEST(PagedKvCache, RowsSurviveSealingAtEveryChunkSize) {
  // 3 rows × 2 heads of 8 + 8 floats (64 bytes) in 4 KiB blocks: 64 rows
  // per block, chunks of 64 tokens = 6 blocks. Token by token across
  // three chunks, and chunks that cross one or several chunk boundaries.
  WriteAndCheck(Heads(2, 8), 3, 4096, std::vector<int64_t>(150, 1));
  WriteAndCheck(Heads(2, 8), 3, 4096, {5, 59, 1, 70, 200, 3});
  // Rows that do not tile a block (85 per 4 KiB), so sealed runs cross
  // blocks.
  WriteAndCheck(Heads(1, 6), 2, 4096, {40, 47, 1, 90, 7});
  // One head row per block.
  WriteAndCheck(Heads(2, 384), 3, 4096, {1, 2, 3});
}

TEST(PagedKvCache, LatentRowsAreTheirOwnValues) {
  KvLayout latent;
  latent.k_width = 12;
  latent.v_width = 8;
  latent.v_in_k = true;
  WriteAndCheck(latent, 2, 2048, {1, 30, 42, 1, 1, 64});
}

TEST(PagedKvCache, NarrowTypesHoldMoreTokensInABudget) {
  // demo-gqa's cache (2 kv heads of 64) in 1 MiB of 64 KiB blocks.
  for (auto [dtype, at_least] : {std::pair{DType::kBfloat16, 1.95},
                                 std::pair{DType::kFloat16, 1.95}, std::pair{DType::kInt8, 3.5}}) {
    SCOPED_TRACE(DTypeName(dtype));
    auto fits = [](DType d) {
      KvLayout l = Heads(2, 64);
      l.dtype = d;
      auto pool = KvBlockPool::Create(1 << 20, 64 << 10);
      auto cache = PagedKvCache::Create(l, 1, 0, pool->get());
      int64_t tokens = 0;
      while ((*cache)->Reserve(1).ok()) {
        (*cache)->Advance(1);
        ++tokens;
      }
      return tokens;
    };
    const int64_t f32 = fits(DType::kFloat32), narrow = fits(dtype);
    EXPECT_GE(static_cast<double>(narrow), at_least * static_cast<double>(f32))
        << narrow << " vs " << f32;
  }
}

TEST(PagedKvCache, Int8RowsWithNaNOrInfinityReadBackAsNaN) {
  KvLayout l = Heads(1, 4);
  l.dtype = DType::kInt8;
  auto pool = KvBlockPool::Create(1 << 16, 4096);
  ASSERT_OK(pool);
  auto cache = PagedKvCache::Create(l, 1, 0, pool->get());
  ASSERT_OK(cache);
  ASSERT_OK((*cache)->Reserve(3));
  const float inf = std::numeric_limits<float>::infinity();
  const float rows[3][4] = {{1, 2, NAN, 4}, {1, -inf, 0, 0}, {0, 0, 0, 0}};
  for (int t = 0; t < 3; ++t) (*cache)->StoreK(0, 0, t, rows[t]);
  float got[4];
  for (int t = 0; t < 2; ++t) {
    (*cache)->LoadK(0, 0, t, got);
    for (float g : got) EXPECT_TRUE(std::isnan(g)) << t;
  }
  (*cache)->LoadK(0, 0, 2, got);  // all zero: scale 0, values 0
  for (float g : got) EXPECT_EQ(g, 0.0f);
}

TEST(PagedKvCache, AOneTokenStreamOfManyLanesTakesOneBlock) {
  // demo-mha, unbounded: 1 token of 8 heads is 4 KiB of a 64 KiB block.
  auto pool = KvBlockPool::Create(1 << 20, 64 << 10);
  ASSERT_OK(pool);
  auto cache = PagedKvCache::Create(Heads(8, 64), 1, /*max_tokens=*/0, pool->get());
  ASSERT_OK(cache);
  ASSERT_OK((*cache)->Reserve(1));
  EXPECT_EQ((*cache)->blocks_held(), 1);
  EXPECT_EQ((*pool)->used_blocks(), 1);
}

}  // namespace
}  // namespace attention
