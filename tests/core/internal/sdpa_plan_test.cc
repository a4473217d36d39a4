// The Sdpa planner: which path each job takes, the query tiles, and the
// per-thread scratch of each plan.
#include "core/internal/sdpa_plan.h"

#include <gtest/gtest.h>

#include "core/internal/row_attention.h"

namespace attention::internal {
namespace {

SdpaProblem Problem(int64_t batch, int64_t hq, int64_t hkv, int64_t lq, int64_t lk, int64_t dk,
                    int64_t dv, bool weights, int threads) {
  SdpaProblem p;
  p.batch = batch, p.hq = hq, p.hkv = hkv, p.lq = lq, p.lk = lk, p.dk = dk, p.dv = dv;
  p.weights = weights;
  p.threads = threads;
  return p;
}

TEST(SdpaPlan, DecodeTakesTheFewRowsLoops) {
  // GQA decode: 4 heads × 1 token per kv head.
  const SdpaPlan plan = PlanSdpa(Problem(8, 32, 8, 1, 4096, 128, 128, false, 2));
  EXPECT_EQ(plan.path, SdpaPath::kFewRows);
  EXPECT_EQ(plan.tail_path, SdpaPath::kFewRows);
  EXPECT_EQ(plan.group, 4);
  EXPECT_EQ(plan.query_tile, 1);
  EXPECT_EQ(plan.jobs, 64);
  EXPECT_EQ(plan.team, 2);
  // One key block of score rows for the 4 rows; no GEMM state.
  EXPECT_EQ(plan.score_floats, 4 * kKeyBlock);
  EXPECT_EQ(plan.acc_floats, 4 * 128);
  EXPECT_EQ(plan.row_floats, 0);
  EXPECT_EQ(plan.pack_floats, 0);
}

TEST(SdpaPlan, DecodeWithWeightsScoresIntoTheWeights) {
  const SdpaPlan plan = PlanSdpa(Problem(1, 32, 1, 1, 1300, 24, 40, true, 2));
  EXPECT_EQ(plan.path, SdpaPath::kFewRows);  // 32 heads of one token
  EXPECT_EQ(plan.score_floats, 0);
  EXPECT_EQ(plan.acc_floats, 32 * 40);
}

TEST(SdpaPlan, ShortKeysTakeWholeScoreRows) {
  const SdpaPlan plan = PlanSdpa(Problem(4, 16, 16, 512, 512, 64, 64, false, 2));
  EXPECT_EQ(plan.path, SdpaPath::kWholeRows);
  EXPECT_EQ(plan.query_tile, 512);  // 2^18 floats / 512 keys, all of Lq
  EXPECT_EQ(plan.jobs, 64);
  EXPECT_EQ(plan.score_floats, 512 * 512);
  EXPECT_EQ(plan.acc_floats, 512 * 64);
  EXPECT_EQ(plan.row_floats, 512);
  EXPECT_EQ(plan.pack_floats, 0);  // G = 1: rows read in place
}

TEST(SdpaPlan, LongKeysTakeFlashTiles) {
  // 2^18 / (4 · 2048) = 32 rows of whole score rows: too few, so flash with
  // 256 / 4 = 64 query rows per head.
  const SdpaPlan plan = PlanSdpa(Problem(1, 32, 8, 2048, 2048, 128, 128, false, 2));
  EXPECT_EQ(plan.path, SdpaPath::kFlash);
  EXPECT_EQ(plan.query_tile, 64);
  EXPECT_EQ(plan.tiles, 32);
  EXPECT_EQ(plan.flash_keys, 512);
  EXPECT_EQ(plan.score_floats, 4 * 64 * 512);
  EXPECT_EQ(plan.row_floats, 4 * 64);
  EXPECT_EQ(plan.pack_floats, 4 * 64 * 128);  // G > 1: rows packed
}

TEST(SdpaPlan, WideKeysShrinkTheFlashKeyTile) {
  // A K tile stays within 384 KiB: 384 Ki / (576 · 4) = 170 keys, in 64s.
  const SdpaPlan plan = PlanSdpa(Problem(1, 4, 1, 64, 9000, 576, 512, false, 2));
  EXPECT_EQ(plan.path, SdpaPath::kFlash);
  EXPECT_EQ(plan.flash_keys, 128);
  EXPECT_EQ(plan.score_floats, plan.group * plan.query_tile * 128);
}

TEST(SdpaPlan, WeightsTakeTheWeightsPathEvenForLongKeys) {
  const SdpaPlan plan = PlanSdpa(Problem(1, 2, 1, 64, 9000, 8, 12, true, 2));
  EXPECT_EQ(plan.path, SdpaPath::kWeights);
  EXPECT_EQ(plan.score_floats, 0);  // scores live in the caller's weights
  EXPECT_EQ(plan.acc_floats, 0);
  EXPECT_EQ(plan.row_floats, 0);
  EXPECT_EQ(plan.pack_floats, 0);
}

TEST(SdpaPlan, ShortLastTileTakesTheFewRowsLoops) {
  // Lq 33 halves to tiles of 9 (9, 9, 9, 6) for 4 jobs per thread: the last
  // tile is few-rows beside flash tiles; scratch covers both.
  const SdpaPlan plan = PlanSdpa(Problem(1, 1, 1, 33, 9000, 8, 8, false, 2));
  EXPECT_EQ(plan.query_tile, 9);
  EXPECT_EQ(plan.tiles, 4);
  EXPECT_EQ(plan.path, SdpaPath::kFlash);
  EXPECT_EQ(plan.tail_path, SdpaPath::kFewRows);
  EXPECT_EQ(plan.PathOf(9), SdpaPath::kFlash);
  EXPECT_EQ(plan.PathOf(6), SdpaPath::kFewRows);
  EXPECT_EQ(plan.score_floats, std::max<int64_t>(9 * 512, FewRowsScratch(6, 8, 8)));
  EXPECT_EQ(plan.row_floats, 9);
}

TEST(SdpaPlan, ShortLastTileWithWeightsNeedsAccumulators) {
  // Weights: 2^18 / 9000 = 29 rows, halved to 15: tiles 15, 15 on the
  // weights path, the tail of 3 few-rows, which accumulates its P·V in
  // scratch.
  const SdpaPlan plan = PlanSdpa(Problem(1, 1, 1, 33, 9000, 8, 8, true, 2));
  EXPECT_EQ(plan.query_tile, 15);
  EXPECT_EQ(plan.path, SdpaPath::kWeights);
  EXPECT_EQ(plan.tail_path, SdpaPath::kFewRows);
  EXPECT_EQ(plan.score_floats, 0);
  EXPECT_EQ(plan.acc_floats, 15 * 8);
}

TEST(SdpaPlan, TilesSplitForThreadsButNotBelowSixteenRows) {
  const SdpaPlan one = PlanSdpa(Problem(1, 1, 1, 512, 512, 64, 64, false, 1));
  EXPECT_EQ(one.query_tile, 128);  // 512 → 256 → 128: 4 jobs for 1 thread
  const SdpaPlan many = PlanSdpa(Problem(1, 1, 1, 512, 512, 64, 64, false, 64));
  EXPECT_EQ(many.query_tile, 16);
  EXPECT_EQ(many.jobs, 32);
  EXPECT_EQ(many.team, 32);  // never more threads than jobs
  const SdpaPlan tiny = PlanSdpa(Problem(1, 1, 1, 3, 5, 4, 4, false, 8));
  EXPECT_EQ(tiny.jobs, 1);
  EXPECT_EQ(tiny.team, 1);
}

TEST(SdpaPlan, PathNames) {
  EXPECT_STREQ(SdpaPathName(SdpaPath::kFewRows), "few_rows");
  EXPECT_STREQ(SdpaPathName(SdpaPath::kWholeRows), "whole_rows");
  EXPECT_STREQ(SdpaPathName(SdpaPath::kFlash), "flash");
  EXPECT_STREQ(SdpaPathName(SdpaPath::kWeights), "weights");
}

}  // namespace
}  // namespace attention::internal
