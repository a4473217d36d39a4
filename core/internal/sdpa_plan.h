// Private: how Sdpa computes a problem, decided before any memory is touched.
//
// A pure function of the problem's dims, whether dense weights are wanted
// and the thread count: the query tile, the path each job takes and the
// per-thread scratch those paths need. The cache budgets below are fixed
// (sized for a core's L2), not read from the CPU, so a plan is the same on
// every machine with the same thread count.
//
// Jobs: batch row b, kv head g, query rows [i0, i0 + Tq) of all G = Hq / Hkv
// query heads that share kv head g (the last job of a (b, g) has Lq % Tq rows
// when that is not 0). Each job takes one path:
//   kFewRows    the few-rows loops (row_attention.h): decode, a few draft
//               tokens; with or without weights
//   kWholeRows  without weights: Q·Kᵀ of whole score rows into scratch,
//               softmax without the division, P·V, divide
//   kFlash      without weights, long Lk: key tiles with an online softmax
//   kWeights    weights wanted: Q·Kᵀ into the caller's weights rows,
//               softmax there, P·V into the output
#ifndef ATTENTION_CORE_INTERNAL_SDPA_PLAN_H_
#define ATTENTION_CORE_INTERNAL_SDPA_PLAN_H_

#include <cstdint>

namespace attention::internal {

// Whole score rows: a thread's G × Tq × Lk scores stay within this many
// floats (1 MiB, a core's L2).
inline constexpr int64_t kWholeRowsFloats = int64_t{1} << 18;
// Whole score rows are faster while they allow tiles of at least this many
// query rows (one pass, no rescaling); below that, flash.
inline constexpr int64_t kMinWholeRowsTile = 64;
// Flash: about this many query rows (of the G heads) per job, against key
// tiles of kFlashKeys keys ...
inline constexpr int64_t kFlashRows = 256;
inline constexpr int64_t kFlashKeys = 512;
// ... or fewer, so that a K tile stays within this many bytes (L2 holds it
// for the P·V that follows, where V shares K's rows as in MLA).
inline constexpr int64_t kFlashTileBytes = 384 << 10;
// Query tiles are halved (not below this many rows) until there are at
// least kJobsPerThread jobs per thread.
inline constexpr int64_t kMinSplitTile = 16;
inline constexpr int64_t kJobsPerThread = 4;

enum class SdpaPath { kFewRows, kWholeRows, kFlash, kWeights };

const char* SdpaPathName(SdpaPath path);

// Dims as in core/sdpa.h (all >= 1, Hq % Hkv == 0).
struct SdpaProblem {
  int64_t batch = 1, hq = 1, hkv = 1, lq = 1, lk = 1, dk = 1, dv = 1;
  bool weights = false;  // dense [B, Hq, Lq, Lk] weights wanted
  int threads = 1;       // threads available (>= 1)
};

struct SdpaPlan {
  int64_t group = 1;                        // G = Hq / Hkv
  int64_t query_tile = 1;                   // Tq
  int64_t tiles = 1;                        // query tiles per (b, g): ceil(Lq / Tq)
  int64_t jobs = 1;                         // B · Hkv · tiles
  int team = 1;                             // threads to start: min(threads, jobs)
  SdpaPath path = SdpaPath::kFewRows;       // a job of Tq rows
  SdpaPath tail_path = SdpaPath::kFewRows;  // the last job when Lq % Tq != 0, else = path
  int64_t flash_keys = kFlashKeys;          // keys per kFlash tile
  // Per-thread scratch in floats, enough for both paths of the plan:
  int64_t score_floats = 0;  // score rows (kFewRows without weights, kWholeRows, kFlash)
  int64_t acc_floats = 0;    // unnormalised output rows, G·Tq·Dv (all but kWeights)
  int64_t row_floats = 0;    // G·Tq row maxima, and as many row sums (kWholeRows, kFlash)
  int64_t pack_floats = 0;   // G·Tq packed query rows of Dk (G > 1, kWholeRows, kFlash)

  // The path of a job of `rows` query rows (Tq, or the tail's).
  SdpaPath PathOf(int64_t rows) const { return rows == query_tile ? path : tail_path; }
};

SdpaPlan PlanSdpa(const SdpaProblem& problem);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_SDPA_PLAN_H_
