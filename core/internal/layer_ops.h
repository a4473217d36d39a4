// Private: the small element-wise pieces of the layers (RMSNorm, RoPE).
#ifndef ATTENTION_CORE_INTERNAL_LAYER_OPS_H_
#define ATTENTION_CORE_INTERNAL_LAYER_OPS_H_

#include <cstdint>
#include <vector>

#include "core/config.h"

namespace attention::internal {

inline constexpr float kRmsNormEps = 1e-6f;

// In place for each of `rows` rows of x (leading dimension ld), over its
// first n columns: x = x / sqrt(mean(x²) + eps) · weight.
void RmsNormRows(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight,
                 double eps = kRmsNormEps);

// RoPE's frequencies over d rotated dims (even): inv_freq[k] (k < d/2) =
// theta^(-2k/d) in float32 as torch computes them, then `scaling`
// (config.h) as Hugging Face's rope_parameters apply it; cos and sin are
// multiplied by attention_factor (yarn; 1 otherwise).
struct RopeFrequencies {
  std::vector<float> inv_freq;
  float attention_factor = 1.0f;
};
RopeFrequencies ComputeRopeFrequencies(double theta, int64_t d, const RopeScaling& scaling);

// The factor DeepSeek's MLA multiplies its softmax scale by under yarn
// with mscale_all_dim: (0.1·mscale_all_dim·ln(factor) + 1)²; else 1.
double MlaSoftmaxScaleFactor(const RopeScaling& scaling);

// Rotate-half (NeoX) RoPE in place. Row (b, t) starts at
// x + (b·len + t)·row_stride and is at position pos0 + t; each of its
// `heads` vectors of width d = 2·freq.inv_freq.size() starts head_stride
// apart. angle = pos · inv_freq[k] (float32) for k < d/2, and (x1, x2) ->
// (x1·cos − x2·sin, x2·cos + x1·sin) on the two halves, cos and sin times
// freq.attention_factor; with `interleaved` (GPT-J), on the pairs (x[2k],
// x[2k + 1]) instead. The vector's elements past d (partial rotary) are
// left as they are.
void ApplyRope(float* x, int64_t batch, int64_t len, int64_t heads, int64_t head_stride,
               int64_t row_stride, const RopeFrequencies& freq, int64_t pos0,
               bool interleaved = false);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_LAYER_OPS_H_
