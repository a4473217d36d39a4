#include "core/internal/softmax.h"

#include "core/internal/kernels.h"

namespace attention::internal {

float OnlineSoftmaxTile(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                        int64_t keep_stride, float& m, float& l) {
  return Kernels().online_softmax_tile(s, n, scale, visible, keep, keep_stride, &m, &l);
}

void MaskedSoftmaxRow(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                      int64_t keep_stride) {
  Kernels().softmax_row(s, n, scale, visible, keep, keep_stride, /*normalize=*/true);
}

float UnnormalizedSoftmaxRow(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                             int64_t keep_stride) {
  return Kernels().softmax_row(s, n, scale, visible, keep, keep_stride, /*normalize=*/false);
}

}  // namespace attention::internal
