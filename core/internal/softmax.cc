#include "core/internal/softmax.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace attention::internal {
namespace {

// Cephes-style exp: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial.
inline __m256 Exp256(__m256 x) {
  const __m256 kHi = _mm256_set1_ps(88.3762626647949f);
  const __m256 kLo = _mm256_set1_ps(-87.3365447504f);
  const __m256 underflow = _mm256_cmp_ps(x, kLo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, kLo), kHi);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
                                23);
  __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, result);
}

inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float HorizontalSum(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace

void ExpInPlace(float* x, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, Exp256(_mm256_loadu_ps(x + j)));
  for (; j < n; ++j) x[j] = x[j] < -87.3365447504f ? 0.0f : std::exp(x[j]);
}

namespace {

// Scales s[0, visible) and masks (keep == 0, or j >= visible) to
// kMaskedScore over s[0, n); returns the maximum.
float ScaleAndMask(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                   int64_t keep_stride) {
  visible = std::clamp<int64_t>(visible, 0, n);
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(kMaskedScore);
  float smax = kMaskedScore;
  int64_t j = 0;
  if (keep == nullptr) {
    for (; j + 8 <= visible; j += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + j), vscale);
      vmax = _mm256_max_ps(vmax, v);
      _mm256_storeu_ps(s + j, v);
    }
    for (; j < visible; ++j) {
      s[j] *= scale;
      smax = std::max(smax, s[j]);
    }
  } else {
    for (; j < visible; ++j) {
      s[j] = keep[j * keep_stride] != 0 ? s[j] * scale : kMaskedScore;
      smax = std::max(smax, s[j]);
    }
  }
  for (j = visible; j < n; ++j) s[j] = kMaskedScore;
  return std::max(smax, HorizontalMax(vmax));
}

// s[j] = exp(s[j] - m) over s[0, n); returns the sum.
float ExpShiftedSum(float* s, int64_t n, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 vsum = _mm256_setzero_ps();
  float sum = 0.0f;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = Exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
    vsum = _mm256_add_ps(vsum, e);
    _mm256_storeu_ps(s + j, e);
  }
  for (; j < n; ++j) {
    const float d = s[j] - m;
    s[j] = d < -87.3365447504f ? 0.0f : std::exp(d);
    sum += s[j];
  }
  return sum + HorizontalSum(vsum);
}

}  // namespace

float OnlineSoftmaxTile(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                        int64_t keep_stride, float& m, float& l) {
  const float m_new = std::max(m, ScaleAndMask(s, n, scale, visible, keep, keep_stride));
  const float alpha = m == -INFINITY ? 0.0f : std::exp(m - m_new);
  l = l * alpha + ExpShiftedSum(s, n, m_new);
  m = m_new;
  return alpha;
}

void MaskedSoftmaxRow(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                      int64_t keep_stride) {
  const float smax = ScaleAndMask(s, n, scale, visible, keep, keep_stride);
  const float ssum = ExpShiftedSum(s, n, smax);
  // Normalise (ssum >= 1: the maximum contributes exp(0)).
  const float inv = 1.0f / ssum;
  const __m256 vinv = _mm256_set1_ps(inv);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), vinv));
  for (; j < n; ++j) s[j] *= inv;
}

}  // namespace attention::internal
