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
  EXPECT_EQ(plan->WindowBlocks(INT64_MAX, 0), INT64_MAX);
  EXPECT_EQ(plan->WindowBlocks(1, INT64_MAX), INT64_MAX);
}

TEST(PlanKvBlocks, AWindowTakesTheBlocksOfItsTokensAndAChunkPlusOne) {
  // 8 heads of 64 + 64 floats in 64 KiB blocks: 128 head rows (16 tokens)
  // a block, chunks of 64 tokens. W + R - 2 + T tokens, and one block.
  auto plan = PlanKvBlocks(Heads(8, 64), 1, 64 << 10);
  ASSERT_OK(plan);
  EXPECT_EQ(plan->WindowBlocks(4096, 0), plan->BlocksFor(4096 + 62) + 1);
  EXPECT_EQ(plan->WindowBlocks(4096, 0), 261);
  EXPECT_EQ(plan->WindowBlocks(4096, 1), 261);
  EXPECT_EQ(plan->WindowBlocks(4096, 3), 262);
  // Chunks of one token (one head row a block): the window's W - 1 tokens
  // and the chunk's, plus one block.
  auto wide = PlanKvBlocks(Heads(2, 384), 3, 4096);
  ASSERT_OK(wide);
  EXPECT_EQ(wide->WindowBlocks(1, 0), 1);
  EXPECT_EQ(wide->WindowBlocks(2, 1), wide->BlocksFor(2) + 1);
  EXPECT_EQ(wide->WindowBlocks(INT64_MAX, 0), INT64_MAX);
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

// Distinct rows of varied magnitude: (b, h, t, K or V) in the values.
std::vector<float> TestRow(int64_t heads, int64_t b, int64_t h, int64_t t, int64_t kv,
                           int64_t width) {
  std::vector<float> r(static_cast<size_t>(width));
  for (int64_t x = 0; x < width; ++x) {
    r[x] = static_cast<float>((((b * heads + h) * 1000 + t) * 2 + kv) % 997 + 1) *
           (x % 2 == 0 ? 0.01f : -0.003f) * static_cast<float>(x + 1);
  }
  return r;
}

// Reserves, stores TestRow rows for and declares `n` more tokens, as a
// decode step does.
void Append(PagedKvCache& c, int64_t n) {
  const KvLayout& layout = c.layout();
  const int64_t l0 = c.length();
  ASSERT_OK(c.Reserve(n));
  for (int64_t b = 0; b < c.batch(); ++b) {
    for (int64_t h = 0; h < layout.heads; ++h) {
      for (int64_t t = l0; t < l0 + n; ++t) {
        c.StoreK(b, h, t, TestRow(layout.heads, b, h, t, 0, layout.k_width).data());
        if (!layout.v_in_k) {
          c.StoreV(b, h, t, TestRow(layout.heads, b, h, t, 1, layout.v_width).data());
        }
      }
    }
  }
  c.Advance(n);
}

// Checks that the rows of tokens t0 .. length() - 1 read back as stored by
// Append (LoadK / LoadV and through their runs), and that runs cover the
// rows they claim.
void CheckRows(const PagedKvCache& c, int64_t t0) {
  const KvLayout& layout = c.layout();
  const DType dtype = layout.dtype;
  const int64_t heads = layout.heads, kw = layout.k_width, vw = layout.v_width, len = c.length();
  auto row = [&](int64_t b, int64_t h, int64_t t, int64_t kv, int64_t width) {
    return TestRow(heads, b, h, t, kv, width);
  };
  std::vector<float> got(static_cast<size_t>(std::max(kw, vw)));
  for (int64_t b = 0; b < c.batch(); ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t t = t0; t < len; ++t) {
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
      for (int64_t t = t0; t < len;) {
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

// Writes tokens in chunks of the given sizes, as a decode session does
// (Reserve, store, Advance), and checks after each that every row stored
// so far still reads back (CheckRows) and that the cache holds exactly the
// blocks of its bytes. With a window W > 0, each chunk ends with
// DropBefore(length - W + 1), as a windowed layer's step does: then only
// the kept rows are checked, and the cache holds at most WindowBlocks(W, n)
// blocks while a chunk of n is added and WindowBlocks(W, 0) after it, with
// nothing reserved past them.
void WriteAndCheck(KvLayout layout, int64_t batch, int64_t block_bytes,
                   const std::vector<int64_t>& chunks, int64_t window = 0) {
  for (DType dtype : {DType::kFloat32, DType::kBfloat16, DType::kFloat16, DType::kInt8}) {
    SCOPED_TRACE(DTypeName(dtype));
    layout.dtype = dtype;
    auto pool = KvBlockPool::Create(64 << 20, block_bytes);
    ASSERT_OK(pool);
    auto cache = PagedKvCache::Create(layout, batch, 0, pool->get(), window);
    ASSERT_OK(cache);
    PagedKvCache& c = **cache;
    const KvBlockPlan& plan = c.plan();
    const int64_t own = c.blocks_reserved();  // the first token's blocks
    for (int64_t n : chunks) {
      if (window > 0) {  // the most blocks held during the chunk: after its Reserve
        ASSERT_OK(c.Reserve(n));  // (Append's Reserve then changes nothing)
        EXPECT_LE(c.blocks_held(), plan.WindowBlocks(window, n)) << c.length() << "+" << n;
      }
      ASSERT_NO_FATAL_FAILURE(Append(c, n));
      const int64_t len = c.length();
      EXPECT_EQ(c.sealed_tokens() % plan.chunk_tokens, 0);
      EXPECT_LE(c.sealed_tokens(), len);
      if (window > 0) {
        c.DropBefore(len - window + 1);
        EXPECT_EQ(c.first_kept(), std::max<int64_t>(0, len - window + 1));
        EXPECT_LE(c.blocks_held(), plan.WindowBlocks(window, 0)) << len;
        EXPECT_EQ(c.blocks_reserved(), std::max(c.blocks_held(), own));
        EXPECT_EQ((*pool)->used_blocks(), c.blocks_reserved());
      } else {
        EXPECT_EQ(c.blocks_held(), plan.BlocksFor(len)) << len;
      }
      // The blocks before the held ones were given back, P rows each.
      EXPECT_EQ(c.head_rows_held(),
                len * plan.lanes - (plan.BlocksFor(len) - c.blocks_held()) * plan.rows_per_block);
      ASSERT_NO_FATAL_FAILURE(CheckRows(c, c.first_kept()));
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

TEST(PagedKvCache, DropBeforeGivesBlocksBackAndKeepsLaterRows) {
  // 3 rows × 1 head of 8 + 8 in 8 KiB blocks: in float32 128 head rows a
  // block and chunks of 64 tokens (192 rows), so chunks straddle blocks
  // (bf16, f16: 256 rows; int8: 341 rows, chunks of 68 tokens).
  for (DType dtype : {DType::kFloat32, DType::kBfloat16, DType::kFloat16, DType::kInt8}) {
    SCOPED_TRACE(DTypeName(dtype));
    KvLayout layout = Heads(1, 8);
    layout.dtype = dtype;
    auto pool = KvBlockPool::Create(1 << 20, 8192);
    ASSERT_OK(pool);
    auto cache = PagedKvCache::Create(layout, 3, 0, pool->get());
    ASSERT_OK(cache);
    PagedKvCache& c = **cache;
    const KvBlockPlan& plan = c.plan();
    // Blocks wholly inside the chunks that end by `token`.
    auto blocks_before = [&](int64_t token) {
      return token / plan.chunk_tokens * plan.chunk_tokens * plan.lanes / plan.rows_per_block;
    };
    ASSERT_NO_FATAL_FAILURE(Append(c, 300));
    const int64_t used = (*pool)->used_blocks();
    EXPECT_EQ(used, plan.BlocksFor(300));
    EXPECT_EQ(c.first_kept(), 0);

    c.DropBefore(200);  // memory and reservation of the blocks before go back
    const int64_t gone = blocks_before(200);
    EXPECT_GT(gone, 0);
    EXPECT_EQ(c.first_kept(), 200);
    EXPECT_EQ(c.blocks_held(), used - gone);
    EXPECT_EQ(c.blocks_reserved(), c.blocks_held());
    EXPECT_EQ((*pool)->used_blocks(), used - gone);
    EXPECT_EQ(c.head_rows_held(), 300 * plan.lanes - gone * plan.rows_per_block);
    ASSERT_NO_FATAL_FAILURE(CheckRows(c, 200));

    c.DropBefore(100);  // an earlier point changes nothing
    EXPECT_EQ(c.first_kept(), 200);
    EXPECT_EQ(c.blocks_held(), used - gone);

    // Growth reserves only the new blocks; old and new rows read back.
    ASSERT_NO_FATAL_FAILURE(Append(c, 150));
    EXPECT_EQ(c.blocks_held(), plan.BlocksFor(450) - gone);
    EXPECT_EQ((*pool)->used_blocks(), c.blocks_held());
    ASSERT_NO_FATAL_FAILURE(CheckRows(c, 200));

    c.DropBefore(1000);  // past the length: up to it
    EXPECT_EQ(c.first_kept(), 450);
    EXPECT_EQ(c.blocks_held(), plan.BlocksFor(450) - blocks_before(450));
    EXPECT_EQ((*pool)->used_blocks(), c.blocks_held());
    ASSERT_NO_FATAL_FAILURE(Append(c, 10));
    ASSERT_NO_FATAL_FAILURE(CheckRows(c, 450));
    cache->reset();
    EXPECT_EQ((*pool)->used_blocks(), 0);
  }
}

TEST(PagedKvCache, AWindowedStreamHoldsAtMostItsWindowsBlocks) {
  // Each chunk followed by DropBefore(length - W + 1), as a windowed
  // layer's step: token by token, and in chunks (some longer than W).
  // Chunks of 64 tokens in 6 blocks of 64 rows.
  WriteAndCheck(Heads(2, 8), 3, 4096, std::vector<int64_t>(400, 1), 100);
  WriteAndCheck(Heads(2, 8), 3, 4096, {5, 59, 1, 70, 200, 3, 1, 1, 64, 130}, 100);
  // Chunks of 1.5 blocks (float32), straddling them.
  WriteAndCheck(Heads(1, 8), 3, 8192, std::vector<int64_t>(500, 1), 70);
  WriteAndCheck(Heads(1, 8), 3, 8192, {40, 47, 1, 90, 7, 64, 1, 200}, 64);
  // Rows that do not tile a block (85 per 4 KiB).
  WriteAndCheck(Heads(1, 6), 2, 4096, {40, 47, 1, 90, 7, 1, 1, 100}, 30);
  // One head row per block, chunks of one token; windows of one and two.
  WriteAndCheck(Heads(2, 384), 3, 4096, {1, 2, 3, 1, 1}, 1);
  WriteAndCheck(Heads(2, 384), 3, 4096, {1, 2, 3, 1, 1}, 2);
  KvLayout latent;
  latent.k_width = 12;
  latent.v_width = 8;
  latent.v_in_k = true;
  WriteAndCheck(latent, 2, 2048, {1, 30, 42, 1, 1, 64, 1, 1, 100}, 40);
}

TEST(PagedKvCache, AWindowedStreamReservesItsWindowAndLastsToMaxTokensOnIt) {
  // 2 rows × 2 heads of 8 + 8 floats in 4 KiB blocks: 64 rows a block,
  // chunks of 64 tokens (4 blocks); W = 100, max_tokens 10·W.
  const KvLayout layout = Heads(2, 8);
  const int64_t w = 100, max_tokens = 10 * w;
  auto plan = PlanKvBlocks(layout, 2, 4096);
  ASSERT_OK(plan);
  const int64_t own = plan->WindowBlocks(w, plan->chunk_tokens);
  EXPECT_EQ(own, plan->BlocksFor(w + 2 * plan->chunk_tokens - 2) + 1);
  EXPECT_LT(own, plan->BlocksFor(max_tokens));
  // A budget of exactly that reservation: chunks of up to R tokens reach
  // max_tokens on it alone.
  auto pool = KvBlockPool::Create(own * 4096, 4096);
  ASSERT_OK(pool);
  auto cache = PagedKvCache::Create(layout, 2, max_tokens, pool->get(), w);
  ASSERT_OK(cache);
  PagedKvCache& c = **cache;
  EXPECT_EQ(c.blocks_reserved(), own);
  EXPECT_EQ((*pool)->used_blocks(), own);
  const int64_t chunks[] = {1, 64, 3, 1, 17, 64, 1};
  for (int64_t i = 0; c.length() < max_tokens; ++i) {
    ASSERT_NO_FATAL_FAILURE(Append(c, std::min(chunks[i % 7], max_tokens - c.length())));
    c.DropBefore(c.length() - w + 1);
    ASSERT_EQ(c.blocks_reserved(), own) << c.length();
    ASSERT_EQ((*pool)->used_blocks(), own);
  }
  ASSERT_NO_FATAL_FAILURE(CheckRows(c, c.first_kept()));
  // A longer chunk needs more: refused by the full budget, the cache as
  // it was.
  const int64_t held = c.blocks_held();
  const absl::Status over = c.Reserve(2 * w);
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_EQ(c.length(), max_tokens);
  EXPECT_EQ(c.blocks_held(), held);
  EXPECT_EQ(c.blocks_reserved(), own);
  EXPECT_EQ((*pool)->used_blocks(), own);
  ASSERT_NO_FATAL_FAILURE(CheckRows(c, c.first_kept()));

  // Refused at the start, the message names the window.
  auto refused = PagedKvCache::Create(layout, 2, max_tokens, pool->get(), w);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "2 rows x 1000 tokens in a sliding window of 100 need 16 blocks"))
      << refused.status();
  // A max_tokens below the window reserves its own tokens' blocks.
  auto other = KvBlockPool::Create(1 << 20, 4096);
  ASSERT_OK(other);
  auto small = PagedKvCache::Create(layout, 2, 10, other->get(), w);
  ASSERT_OK(small);
  EXPECT_EQ((*small)->blocks_reserved(), plan->BlocksFor(10));
  EXPECT_EQ(PagedKvCache::Create(layout, 2, 0, other->get(), -1).status().code(),
            absl::StatusCode::kInvalidArgument);
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
