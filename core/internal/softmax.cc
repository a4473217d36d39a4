#include "core/internal/softmax.h"

#include <algorithm>
#include <cmath>

#include "core/internal/kernels.h"

namespace attention::internal {

float OnlineSoftmaxTile(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                        int64_t keep_stride, float& m, float& l) {
  return Kernels().online_softmax_tile(s, n, scale, visible, keep, keep_stride, &m, &l);
}

void SoftcapRow(float* s, int64_t n, float scale, float cap) {
  const float inv = scale / cap;
  for (int64_t j = 0; j < n; ++j) s[j] = cap * std::tanh(s[j] * inv);
}

float RowLse(float m, float l) {
  if (m <= 0.5f * kMaskedScore) return -INFINITY;
  return m + std::log(l);
}

float OnlineRowTile(float* s, int64_t k0, int64_t n, float scale, float softcap, int64_t first,
                    int64_t visible, const uint8_t* keep_row, int64_t keep_stride, float& m,
                    float& l) {
  const int64_t skip = std::clamp<int64_t>(first - k0, 0, n);
  std::fill(s, s + skip, 0.0f);
  if (skip == n) return 1.0f;
  float* t = s + skip;
  const int64_t t0 = k0 + skip, tn = n - skip;
  if (softcap > 0.0f) {
    SoftcapRow(t, std::clamp<int64_t>(visible - t0, 0, tn), scale, softcap);
    scale = 1.0f;
  }
  return OnlineSoftmaxTile(t, tn, scale, visible - t0,
                           keep_row != nullptr ? keep_row + t0 * keep_stride : nullptr, keep_stride,
                           m, l);
}

}  // namespace attention::internal
