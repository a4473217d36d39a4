// Private: attention for a few query rows at a time, reading each key and
// value row once for all of them. Decode (one new token per head, or the G
// heads of a group) is memory-bound: a GEMM of 1–7 rows spends its time in
// packing and call overhead, while these AVX2 loops stream K and V at
// memory speed. Used by Sdpa and PagedSdpa below kFewRows rows.
#ifndef ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_
#define ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/internal/softmax.h"

namespace attention::internal {

inline constexpr int64_t kFewRows = 8;

// dot(a, b) over n floats.
inline float Dot(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float sum = _mm_cvtss_f32(h);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += a · x over n floats.
inline void Axpy(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

// For rows i < nr: scores s[i][j] = q[i]·key(j) for j < kmax, masked
// softmax (scale; keys >= visible[i] or with keep[i][j·keep_stride] == 0
// masked), then out[i] = Σ_j p[i][j] · value(j). `s[i]` rows hold at least
// kmax floats (they may be the caller's weights rows); `acc` holds nr·dv.
template <typename KeyRow, typename ValueRow>
void AttendFewRows(int64_t nr, const float* const* q, int64_t dk, int64_t dv, int64_t kmax,
                   const int64_t* visible, const uint8_t* const* keep, int64_t keep_stride,
                   float scale, KeyRow key, ValueRow value, float* const* s, float* acc,
                   float* const* out) {
  for (int64_t j = 0; j < kmax; ++j) {
    const float* kj = key(j);
    for (int64_t i = 0; i < nr; ++i) s[i][j] = Dot(q[i], kj, dk);
  }
  for (int64_t i = 0; i < nr; ++i) {
    MaskedSoftmaxRow(s[i], kmax, scale, visible[i], keep != nullptr ? keep[i] : nullptr,
                     keep_stride);
  }
  std::fill(acc, acc + nr * dv, 0.0f);
  for (int64_t j = 0; j < kmax; ++j) {
    const float* vj = value(j);
    for (int64_t i = 0; i < nr; ++i) {
      const float p = s[i][j];
      if (p != 0.0f) Axpy(p, vj, acc + i * dv, dv);
    }
  }
  for (int64_t i = 0; i < nr; ++i) std::memcpy(out[i], acc + i * dv, dv * sizeof(float));
}

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_ROW_ATTENTION_H_
