// Private: attention for a few query rows at a time, reading each key and
// value row once for all of them. Decode (one new token per head, or the G
// heads of a group) is memory-bound: a GEMM of 1–7 rows spends its time in
// packing and call overhead, while these loops stream K and V at
// memory speed. Used by Sdpa and PagedSdpa below kFewRows rows; the inner
// loops are the ISA-dispatched kernels of kernels.h.
#ifndef ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_
#define ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/internal/kernels.h"
#include "core/internal/softmax.h"

namespace attention::internal {

// Below this many rows the loops always beat a GEMM (Sdpa, PagedSdpa).
inline constexpr int64_t kFewRows = 8;
// Decode rows (the G query heads of a kv head times a few new tokens) they
// take in one pass: MQA's 32 heads, MLA's 16 or 128 in two or more passes.
// Past kFewRows the rows go in groups of four over each block of keys,
// which stays in L2 between groups: a GEMM of 8–32 rows on a read-once
// K/V tile spends its time packing the tile.
inline constexpr int64_t kMaxFewRows = 32;
// Query rows per head (decode's one token, or a few draft tokens) up to
// which kMaxFewRows rows take the loops.
inline constexpr int64_t kDecodeTokens = 4;

// Whether nr rows, `tokens` of them per query head, take AttendFewRows.
inline bool TakesFewRows(int64_t tokens, int64_t nr) {
  return nr < kFewRows || (tokens <= kDecodeTokens && nr <= kMaxFewRows);
}

// Keys per block of the online-softmax loop.
inline constexpr int64_t kKeyBlock = 512;
// With more than kFewRows rows: K and V bytes per block (the block is
// re-read from L2 by each group of rows).
inline constexpr int64_t kGroupedBlockBytes = 256 << 10;

// A run of rows of K or V that share one stride: rows j0 .. j0 + count - 1
// at data + (j - j0) · stride elements of the caller's KvElem (float32 for
// dense tensors); int8 rows' scales at scales + (j - j0) · scale_stride.
struct RowRun {
  const void* data;
  int64_t stride;
  int64_t count;
  const float* scales = nullptr;
  int64_t scale_stride = 0;
};

// Keys per online-softmax block for nr rows of Dk and Dv.
inline int64_t FewRowsKeyBlock(int64_t nr, int64_t dk, int64_t dv) {
  if (nr < kFewRows) return kKeyBlock;
  return std::clamp<int64_t>(kGroupedBlockBytes / ((dk + dv) * 4) / 64 * 64, 64, kKeyBlock);
}

// Floats of score rows AttendFewRows needs (without weights_out): nr rows
// of one key block.
inline int64_t FewRowsScratch(int64_t nr, int64_t dk, int64_t dv) {
  return nr * FewRowsKeyBlock(nr, dk, dv);
}

// Per-row terms of AttendFewRows beyond the plain masked softmax (see
// SdpaTerms in core/sdpa.h); the defaults add nothing.
struct FewRowsTerms {
  const int64_t* first = nullptr;  // row i sees no key before first[i] (skipped)
  int64_t kmin = 0;                // no row sees a key before it: none is computed
  const float* sink = nullptr;     // row i's sink logit (its head's), or null
  float softcap = 0.0f;            // > 0: s <- c·tanh(s / c) before masking
  float* lse = nullptr;            // row i's log-sum-exp written to lse[i]

  int64_t First(int64_t i) const { return first != nullptr ? first[i] : 0; }
  float Sink(int64_t i) const { return sink != nullptr ? sink[i] : -INFINITY; }
};

// For rows i < nr (<= kMaxFewRows): scores s[i][j] = q[i]·key(j) for j <
// kmax, masked softmax (scale; keys >= visible[i] or with
// keep[i][j·keep_stride] == 0 masked), then out[i] = Σ_j p[i][j] · value(j).
// `keys(j0)` / `values(j0)` return the run of rows starting at row j0 (a
// strided tensor is one run, a paged cache one per block). With
// `weights_out`, `s[i]` rows hold at least kmax floats (the caller's weights
// rows, normalised here); without, FewRowsKeyBlock(nr, dk, dv) floats each.
// `acc` holds nr·dv.
// The runs' rows are of type `elem`. With `round_p` (bf16 compute) and
// without weights_out, the probabilities are rounded to bf16 before P·V
// (their sums are not), as the bf16 GEMM paths round them. `terms`: keys
// before terms.kmin are neither scored nor read (their weights are 0). Each
// row goes through OnlineRowTile (softmax.h) with its window start, sink and
// soft-cap: key blocks with an online softmax (the K and V streams advance
// together, two streams for the prefetchers instead of one after the other,
// and a block's scores are still in L1 when used), or with weights_out one
// tile of whole rows, normalised.
template <typename KeyRuns, typename ValueRuns>
void AttendFewRows(int64_t nr, const float* const* q, int64_t dk, int64_t dv, int64_t kmax,
                   const int64_t* visible, const uint8_t* const* keep, int64_t keep_stride,
                   float scale, KeyRuns keys, ValueRuns values, float* const* s, float* acc,
                   float* const* out, bool weights_out, KvElem elem = KvElem::kF32,
                   bool round_p = false, const FewRowsTerms& terms = {}) {
  const KernelTable& kernels = Kernels();
  const auto scores_kv = kernels.scores_kv[static_cast<int>(elem)];
  const auto accumulate_kv = kernels.accumulate_kv[static_cast<int>(elem)];
  // Rows per accumulate call: all of a few; groups of four past that.
  const int64_t group = nr < kFewRows ? nr : 4;
  // Scores of keys [j0, j1) into s[i][j0 - base, j1 - base), run by run.
  auto score_keys = [&](int64_t j0, int64_t j1, int64_t base) {
    float* s_at[kMaxFewRows];
    while (j0 < j1) {
      RowRun run = keys(j0);
      run.count = std::min(run.count, j1 - j0);
      for (int64_t i = 0; i < nr; ++i) s_at[i] = s[i] + (j0 - base);
      if (elem == KvElem::kF32) {
        kernels.scores(nr, q, dk, static_cast<const float*>(run.data), run.stride, run.count, s_at);
      } else {
        scores_kv(nr, q, dk, KvRows{run.data, run.stride, run.scales, run.scale_stride}, run.count,
                  s_at);
      }
      j0 += run.count;
    }
  };
  // acc += s[i][j0 - base, j1 - base) · values [j0, j1), run by run.
  auto accumulate_values = [&](int64_t j0, int64_t j1, int64_t base) {
    const float* p_at[kMaxFewRows];
    while (j0 < j1) {
      RowRun run = values(j0);
      run.count = std::min(run.count, j1 - j0);
      for (int64_t i = 0; i < nr; ++i) p_at[i] = s[i] + (j0 - base);
      for (int64_t g = 0; g < nr; g += group) {
        if (elem == KvElem::kF32) {
          kernels.accumulate(std::min(group, nr - g), p_at + g, static_cast<const float*>(run.data),
                             run.stride, run.count, dv, acc + g * dv);
        } else {
          accumulate_kv(std::min(group, nr - g), p_at + g,
                        KvRows{run.data, run.stride, run.scales, run.scale_stride}, run.count, dv,
                        acc + g * dv);
        }
      }
      j0 += run.count;
    }
  };
  std::fill(acc, acc + nr * dv, 0.0f);
  float m[kMaxFewRows], l[kMaxFewRows];
  const int64_t kmin = std::min(terms.kmin, kmax);
  for (int64_t i = 0; i < nr; ++i) StartOnlineRow(terms.Sink(i), m[i], l[i]);
  auto row_tile = [&](int64_t i, int64_t b0, int64_t n, float* row) {
    return OnlineRowTile(row, b0, n, scale, terms.softcap, terms.First(i), visible[i],
                         keep != nullptr ? keep[i] : nullptr, keep_stride, m[i], l[i]);
  };
  if (weights_out) {
    // Whole rows as one tile, then normalised: s[i] are weights rows.
    score_keys(kmin, kmax, 0);
    for (int64_t i = 0; i < nr; ++i) {
      std::fill(s[i], s[i] + kmin, 0.0f);
      row_tile(i, kmin, kmax - kmin, s[i] + kmin);
      const float inv = 1.0f / l[i];
      for (int64_t j = kmin; j < kmax; ++j) s[i][j] *= inv;
      // A NaN row is NaN in every weight, the keys before kmin too.
      if (kmin < kmax) std::fill(s[i], s[i] + kmin, 0.0f * s[i][kmin]);
    }
    accumulate_values(kmin, kmax, 0);
    for (int64_t i = 0; i < nr; ++i) {
      std::copy_n(acc + i * dv, dv, out[i]);
      if (terms.lse != nullptr) terms.lse[i] = RowLse(m[i], l[i]);
    }
    return;
  }
  const int64_t block = FewRowsKeyBlock(nr, dk, dv);
  for (int64_t b0 = kmin; b0 < kmax; b0 += block) {
    const int64_t b1 = std::min(kmax, b0 + block);
    score_keys(b0, b1, b0);
    for (int64_t i = 0; i < nr; ++i) {
      const float alpha = row_tile(i, b0, b1 - b0, s[i]);
      if (alpha != 1.0f) {
        for (int64_t x = 0; x < dv; ++x) acc[i * dv + x] *= alpha;
      }
      if (round_p) RoundToBfloat16(s[i], b1 - b0);
    }
    accumulate_values(b0, b1, b0);
  }
  for (int64_t i = 0; i < nr; ++i) {
    const float inv = 1.0f / l[i];
    for (int64_t x = 0; x < dv; ++x) out[i][x] = acc[i * dv + x] * inv;
    if (terms.lse != nullptr) terms.lse[i] = RowLse(m[i], l[i]);
  }
}

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_
