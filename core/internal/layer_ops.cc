#include "core/internal/layer_ops.h"

#include <cmath>
#include <vector>

namespace attention::internal {

void RmsNormRows(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, double eps) {
#pragma omp parallel for schedule(static) if (rows * n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(row[j]) * row[j];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
    for (int64_t j = 0; j < n; ++j) row[j] = row[j] * inv * weight[j];
  }
}

void ApplyRope(float* x, int64_t batch, int64_t len, int64_t heads, int64_t head_stride,
               int64_t row_stride, int64_t d, float theta, int64_t pos0, bool interleaved) {
  const int64_t half = d / 2;
  // Frequencies as torch computes them: float32 1 / theta^(2k/d).
  std::vector<float> inv_freq(half);
  for (int64_t k = 0; k < half; ++k) {
    inv_freq[k] = static_cast<float>(
        1.0 / std::pow(static_cast<double>(theta), static_cast<double>(2 * k) / d));
  }
  std::vector<float> cos_t(len * half), sin_t(len * half);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t k = 0; k < half; ++k) {
      const float angle = static_cast<float>(pos0 + t) * inv_freq[k];
      cos_t[t * half + k] = std::cos(angle);
      sin_t[t * half + k] = std::sin(angle);
    }
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < len; ++t) {
      const float* c = cos_t.data() + t * half;
      const float* s = sin_t.data() + t * half;
      float* row = x + (b * len + t) * row_stride;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = row + h * head_stride;
        // The k-th pair: (v[k], v[k + half]), or (v[2k], v[2k + 1]).
        const int64_t step = interleaved ? 2 : 1, other = interleaved ? 1 : half;
        for (int64_t k = 0; k < half; ++k) {
          float* a = v + k * step;
          const float x1 = a[0], x2 = a[other];
          a[0] = x1 * c[k] - x2 * s[k];
          a[other] = x2 * c[k] + x1 * s[k];
        }
      }
    }
  }
}

}  // namespace attention::internal
