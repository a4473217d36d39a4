#include "core/internal/sdpa_plan.h"

#include <algorithm>

#include "core/internal/row_attention.h"

namespace attention::internal {
namespace {

// The path of a job of `rows` query rows of each of the G heads.
SdpaPath PathFor(int64_t rows, int64_t group, bool weights, bool flash) {
  if (TakesFewRows(rows, group * rows)) return SdpaPath::kFewRows;
  if (weights) return SdpaPath::kWeights;
  return flash ? SdpaPath::kFlash : SdpaPath::kWholeRows;
}

// Score floats a job of `rows` rows on `path` needs.
int64_t ScoreFloats(SdpaPath path, int64_t rows, const SdpaProblem& p, const SdpaPlan& plan) {
  const int64_t m = plan.group * rows;
  switch (path) {
    case SdpaPath::kFewRows:  // with weights, the score rows are the weights rows
      return p.weights ? 0 : FewRowsScratch(m, p.dk, p.dv);
    case SdpaPath::kWholeRows:
      return m * p.lk;
    case SdpaPath::kFlash:
      return m * plan.flash_keys;
    case SdpaPath::kWeights:
      return 0;
  }
  return 0;
}

bool UsesRowState(SdpaPath path) {
  return path == SdpaPath::kWholeRows || path == SdpaPath::kFlash;
}

}  // namespace

const char* SdpaPathName(SdpaPath path) {
  switch (path) {
    case SdpaPath::kFewRows:
      return "few_rows";
    case SdpaPath::kWholeRows:
      return "whole_rows";
    case SdpaPath::kFlash:
      return "flash";
    case SdpaPath::kWeights:
      return "weights";
  }
  return "";
}

SdpaPlan PlanSdpa(const SdpaProblem& p) {
  SdpaPlan plan;
  plan.group = p.hq / p.hkv;
  const int64_t g = plan.group;
  const int64_t whole_rows_tile = std::max<int64_t>(1, kWholeRowsFloats / (g * p.lk));
  const bool flash = !p.weights && whole_rows_tile < kMinWholeRowsTile;
  plan.flash_keys = std::clamp<int64_t>(kFlashTileBytes / (p.dk * 4) / 64 * 64, 64, kFlashKeys);
  int64_t tq = flash ? std::max<int64_t>(1, kFlashRows / g) : whole_rows_tile;
  tq = std::min(tq, p.lq);
  auto tiles_of = [&](int64_t t) { return (p.lq + t - 1) / t; };
  while (tq > kMinSplitTile && p.batch * p.hkv * tiles_of(tq) < kJobsPerThread * p.threads) {
    tq = (tq + 1) / 2;
  }
  plan.query_tile = tq;
  plan.tiles = tiles_of(tq);
  plan.jobs = p.batch * p.hkv * plan.tiles;
  plan.team = static_cast<int>(std::min<int64_t>(std::max(p.threads, 1), plan.jobs));
  plan.path = PathFor(tq, g, p.weights, flash);
  const int64_t tail = p.lq % tq;
  plan.tail_path = tail > 0 ? PathFor(tail, g, p.weights, flash) : plan.path;

  plan.score_floats = ScoreFloats(plan.path, tq, p, plan);
  if (tail > 0) {
    plan.score_floats = std::max(plan.score_floats, ScoreFloats(plan.tail_path, tail, p, plan));
  }
  const bool all_weights = plan.path == SdpaPath::kWeights && plan.tail_path == SdpaPath::kWeights;
  plan.acc_floats = all_weights ? 0 : g * tq * p.dv;
  const bool row_state = UsesRowState(plan.path) || UsesRowState(plan.tail_path);
  plan.row_floats = row_state ? g * tq : 0;
  plan.pack_floats = row_state && g > 1 ? g * tq * p.dk : 0;
  return plan;
}

}  // namespace attention::internal
