// Private: the masked row softmax of attention, vectorised for AVX2.
#ifndef ATTENTION_CORE_INTERNAL_SOFTMAX_H_
#define ATTENTION_CORE_INTERNAL_SOFTMAX_H_

#include <cstdint>

namespace attention::internal {

// The value a masked score takes before softmax, as the reference modules'
// masked_fill(mask == 0, -1e9): a fully masked row averages all values.
inline constexpr float kMaskedScore = -1e9f;

// In place over s[0, n): s[j] = s[j] * scale, then s[j] = kMaskedScore for
// j >= visible or (keep != nullptr and keep[j * keep_stride] == 0), then
// softmax. `visible` is clamped to [0, n].
void MaskedSoftmaxRow(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                      int64_t keep_stride);

// exp(x) for 8 lanes with ~1 ulp error over [-87, 88]; 0 below.
void ExpInPlace(float* x, int64_t n);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_SOFTMAX_H_
