// The block plan, the pool's reservations and the paged cache's addressing.
#include "core/kv_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

KvLayout Heads(int64_t heads, int64_t width) {
  KvLayout l;
  l.heads = heads;
  l.k_width = l.v_width = width;
  return l;
}

TEST(PlanKvBlocks, ShortStreamPacksAllHeadsIntoOneBlock) {
  // demo-mha: 8 heads of 64, 512 bytes per head and token, 4 KiB per token.
  auto plan = PlanKvBlocks(Heads(8, 64), 1, /*max_tokens=*/16, 64 << 10);
  ASSERT_OK(plan);
  EXPECT_EQ(plan->lanes_per_block, 8);
  EXPECT_EQ(plan->tokens_per_block, 16);
  EXPECT_EQ(plan->groups, 1);
  EXPECT_EQ(plan->BlocksFor(1), 1);  // 4 KiB of cache: one block, not one per head
  EXPECT_EQ(plan->BlocksFor(16), 1);
  EXPECT_EQ(plan->BlocksFor(17), 2);
  EXPECT_EQ(plan->BlocksFor(0), 0);
}

TEST(PlanKvBlocks, UnboundedStreamKeepsRunsOfRunTokens) {
  auto plan = PlanKvBlocks(Heads(8, 64), 1, /*max_tokens=*/0, 64 << 10);
  ASSERT_OK(plan);
  EXPECT_EQ(plan->lanes_per_block, 2);
  EXPECT_EQ(plan->tokens_per_block, kRunTokens);
  EXPECT_EQ(plan->groups, 4);
  // 1 KiB heads (attention_bench's decode shapes): one lane per block.
  auto large = PlanKvBlocks(Heads(32, 128), 8, /*max_tokens=*/4096, 64 << 10);
  ASSERT_OK(large);
  EXPECT_EQ(large->lanes_per_block, 1);
  EXPECT_EQ(large->tokens_per_block, 64);
  EXPECT_EQ(large->groups, 256);
  EXPECT_EQ(large->BlocksFor(4097), 256 * 65);
}

TEST(PlanKvBlocks, AHeadLongerThanARunStillGetsABlock) {
  // 3 KiB per head and token in 4 KiB blocks: one lane, one token per block.
  auto plan = PlanKvBlocks(Heads(2, 384), 3, 0, 4096);
  ASSERT_OK(plan);
  EXPECT_EQ(plan->lanes_per_block, 1);
  EXPECT_EQ(plan->tokens_per_block, 1);
  EXPECT_EQ(plan->groups, 6);
}

TEST(PlanKvBlocks, HeadTokenLargerThanABlockIsRefusedNamingTheFlag) {
  auto plan = PlanKvBlocks(Heads(1, 256), 1, 0, 1024);  // 2 KiB per token
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted) << plan.status();
  EXPECT_TRUE(absl::StrContains(plan.status().message(), "--kv_block_kb")) << plan.status();
}

TEST(PlanKvBlocks, BlocksForSaturates) {
  auto plan = PlanKvBlocks(Heads(8, 64), int64_t{1} << 20, 0, 1024);
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
  // share blocks of 16 tokens.
  auto cache = PagedKvCache::Create(Heads(2, 8), 2, 16, pool->get());
  ASSERT_OK(cache);
  EXPECT_EQ((*cache)->plan().groups, 1);
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

TEST(PagedKvCache, EveryRowHeadAndTokenHasItsOwnKeyAndValueRows) {
  // 3 rows × 2 heads (6 lanes), 64 bytes per head and token, max_tokens 16,
  // 4 KiB blocks: 4 lanes per block in 2 groups (the second half used),
  // runs of 16 tokens; written past max_tokens (the session's limit).
  auto pool = KvBlockPool::Create(1 << 20, 4096);
  ASSERT_OK(pool);
  const KvLayout layout = Heads(2, 8);
  auto cache = PagedKvCache::Create(layout, 3, 16, pool->get());
  ASSERT_OK(cache);
  PagedKvCache& c = **cache;
  EXPECT_EQ(c.plan().lanes_per_block, 4);
  EXPECT_EQ(c.plan().groups, 2);
  EXPECT_EQ(c.tokens_per_block(), 16);
  const int64_t tokens = 40, tpb = c.tokens_per_block();
  ASSERT_OK(c.Reserve(tokens));
  auto tag = [](int64_t b, int64_t h, int64_t t, int64_t kv) {
    return static_cast<float>(((b * 2 + h) * 1000 + t) * 2 + kv);
  };
  std::set<const float*> rows;
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t x = 0; x < 8; ++x) c.K(b, h, t)[x] = tag(b, h, t, 0);
        for (int64_t x = 0; x < 8; ++x) c.V(b, h, t)[x] = tag(b, h, t, 1);
        rows.insert(c.K(b, h, t));
        rows.insert(c.V(b, h, t));
        if (t % tpb != 0) {  // a lane's rows are contiguous within a block
          EXPECT_EQ(c.K(b, h, t), c.K(b, h, t - 1) + layout.k_width);
          EXPECT_EQ(c.V(b, h, t), c.V(b, h, t - 1) + c.v_stride());
        }
      }
    }
  }
  EXPECT_EQ(rows.size(), static_cast<size_t>(3 * 2 * tokens * 2));
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t x = 0; x < 8; ++x) {
          ASSERT_EQ(c.K(b, h, t)[x], tag(b, h, t, 0)) << b << " " << h << " " << t;
          ASSERT_EQ(c.V(b, h, t)[x], tag(b, h, t, 1)) << b << " " << h << " " << t;
        }
      }
    }
  }
  EXPECT_EQ(c.blocks_held(), 2 * 3);  // 2 groups × ⌈40 / 16⌉
}

}  // namespace
}  // namespace attention
