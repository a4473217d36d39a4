// Private: the small element-wise pieces of the layers (RMSNorm, RoPE).
#ifndef ATTENTION_CORE_INTERNAL_LAYER_OPS_H_
#define ATTENTION_CORE_INTERNAL_LAYER_OPS_H_

#include <cstdint>

namespace attention::internal {

inline constexpr float kRmsNormEps = 1e-6f;

// In place for each of `rows` rows of x (leading dimension ld), over its
// first n columns: x = x / sqrt(mean(x²) + eps) · weight.
void RmsNormRows(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight,
                 double eps = kRmsNormEps);

// Rotate-half (NeoX) RoPE in place. Row (b, t) starts at
// x + (b·len + t)·row_stride and is at position pos0 + t; each of its
// `heads` vectors of width d (even) starts head_stride apart.
// inv_freq[k] = theta^(-2k/d), angle = pos · inv_freq[k] for k < d/2, and
// (x1, x2) -> (x1·cos − x2·sin, x2·cos + x1·sin) on the two halves; with
// `interleaved` (GPT-J), on the pairs (x[2k], x[2k + 1]) instead. The
// vector's elements past d (partial rotary) are left as they are.
void ApplyRope(float* x, int64_t batch, int64_t len, int64_t heads, int64_t head_stride,
               int64_t row_stride, int64_t d, float theta, int64_t pos0, bool interleaved = false);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_LAYER_OPS_H_
