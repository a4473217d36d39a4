// Private: the masked row softmax of attention (vectorised in kernels.h).
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

// One key tile of an online (flash) softmax row. In place over s[0, n):
// scale, mask (j >= visible or keep[j·keep_stride] == 0 -> kMaskedScore),
// then s[j] = exp(s[j] − m') with m' = max(m, max_j s[j]); updates the
// running max m and sum l (l = l·exp(m − m') + Σ s[j]) and returns
// exp(m − m'), the factor the row's accumulated output must be scaled by.
// Start a row with m = -infinity, l = 0.
float OnlineSoftmaxTile(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                        int64_t keep_stride, float& m, float& l);

// MaskedSoftmaxRow without the division: returns the sum of the
// exponentials (>= 1), by which whatever is computed from the row (P·V) is
// then divided, a row of Dv instead of Lk.
float UnnormalizedSoftmaxRow(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                             int64_t keep_stride);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_SOFTMAX_H_
