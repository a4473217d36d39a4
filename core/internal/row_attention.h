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

#include "core/internal/kernels.h"
#include "core/internal/softmax.h"

namespace attention::internal {

inline constexpr int64_t kFewRows = 8;
// Keys per block of the online-softmax loop.
inline constexpr int64_t kKeyBlock = 512;

// A run of rows of K or V that share one stride: rows j0 .. j0 + count - 1
// at data + (j - j0) · stride.
struct RowRun {
  const float* data;
  int64_t stride;
  int64_t count;
};

// For rows i < nr: scores s[i][j] = q[i]·key(j) for j < kmax, masked
// softmax (scale; keys >= visible[i] or with keep[i][j·keep_stride] == 0
// masked), then out[i] = Σ_j p[i][j] · value(j). `keys(j0)` / `values(j0)`
// return the run of rows starting at row j0 (a strided tensor is one run, a
// paged cache one per block). `s[i]` rows hold at least kmax floats (they
// may be the caller's weights rows, then normalised); `acc` holds nr·dv.
template <typename KeyRuns, typename ValueRuns>
void AttendFewRows(int64_t nr, const float* const* q, int64_t dk, int64_t dv, int64_t kmax,
                   const int64_t* visible, const uint8_t* const* keep, int64_t keep_stride,
                   float scale, KeyRuns keys, ValueRuns values, float* const* s, float* acc,
                   float* const* out, bool weights_out) {
  const KernelTable& kernels = Kernels();
  // Scores of keys [j0, j1) into s[i][j0, j1), run by run.
  auto score_keys = [&](int64_t j0, int64_t j1) {
    float* s_at[kFewRows];
    while (j0 < j1) {
      RowRun run = keys(j0);
      run.count = std::min(run.count, j1 - j0);
      for (int64_t i = 0; i < nr; ++i) s_at[i] = s[i] + j0;
      kernels.scores(nr, q, dk, run.data, run.stride, run.count, s_at);
      j0 += run.count;
    }
  };
  // acc += s[i][j0, j1) · values [j0, j1), run by run.
  auto accumulate_values = [&](int64_t j0, int64_t j1) {
    const float* p_at[kFewRows];
    while (j0 < j1) {
      RowRun run = values(j0);
      run.count = std::min(run.count, j1 - j0);
      for (int64_t i = 0; i < nr; ++i) p_at[i] = s[i] + j0;
      kernels.accumulate(nr, p_at, run.data, run.stride, run.count, dv, acc);
      j0 += run.count;
    }
  };
  std::fill(acc, acc + nr * dv, 0.0f);
  if (weights_out) {
    // The caller keeps the normalised weights: one softmax over whole rows.
    score_keys(0, kmax);
    for (int64_t i = 0; i < nr; ++i) {
      kernels.softmax_row(s[i], kmax, scale, visible[i], keep != nullptr ? keep[i] : nullptr,
                          keep_stride, /*normalize=*/true);
    }
    accumulate_values(0, kmax);
    for (int64_t i = 0; i < nr; ++i) std::copy_n(acc + i * dv, dv, out[i]);
    return;
  }
  // Blocks of keys with an online softmax: the K and V streams advance
  // together (two streams for the prefetchers instead of one after the
  // other), and the scores of a block are still in L1 when used.
  float m[kFewRows], l[kFewRows];
  for (int64_t i = 0; i < nr; ++i) m[i] = -INFINITY, l[i] = 0.0f;
  for (int64_t b0 = 0; b0 < kmax; b0 += kKeyBlock) {
    const int64_t b1 = std::min(kmax, b0 + kKeyBlock);
    score_keys(b0, b1);
    for (int64_t i = 0; i < nr; ++i) {
      const uint8_t* keep_row = keep != nullptr ? keep[i] + b0 * keep_stride : nullptr;
      const float alpha = kernels.online_softmax_tile(s[i] + b0, b1 - b0, scale, visible[i] - b0,
                                                      keep_row, keep_stride, &m[i], &l[i]);
      if (alpha != 1.0f) {
        for (int64_t x = 0; x < dv; ++x) acc[i * dv + x] *= alpha;
      }
    }
    accumulate_values(b0, b1);
  }
  for (int64_t i = 0; i < nr; ++i) {
    const float inv = 1.0f / l[i];
    for (int64_t x = 0; x < dv; ++x) out[i][x] = acc[i * dv + x] * inv;
  }
}

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_
