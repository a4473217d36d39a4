#include "core/internal/layer_ops.h"

#include <algorithm>
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

namespace {

// Hugging Face's get_mscale: 0.1·m·ln(factor) + 1 (1 for factor <= 1).
double YarnMscale(double factor, double m) {
  return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0;
}

}  // namespace

RopeFrequencies ComputeRopeFrequencies(double theta, int64_t d, const RopeScaling& s) {
  const int64_t half = d / 2;
  RopeFrequencies f;
  f.inv_freq.resize(half);
  // Frequencies as torch computes them: float32 1 / theta^(2k/d).
  for (int64_t k = 0; k < half; ++k) {
    f.inv_freq[k] = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(2 * k) / d));
  }
  switch (s.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (float& x : f.inv_freq) x = static_cast<float>(x / s.factor);
      break;
    case RopeScalingType::kLlama3: {
      const double low = s.low_freq_factor == 0 ? 1.0 : s.low_freq_factor;
      const double high = s.high_freq_factor == 0 ? 4.0 : s.high_freq_factor;
      const double old_len = static_cast<double>(s.original_max_position);
      const double low_wavelen = old_len / low, high_wavelen = old_len / high;
      for (float& x : f.inv_freq) {
        const double wavelen = 2 * M_PI / x;
        if (wavelen > low_wavelen) {
          x = static_cast<float>(x / s.factor);
        } else if (wavelen >= high_wavelen) {
          const double smooth = (old_len / wavelen - low) / (high - low);
          x = static_cast<float>((1 - smooth) * x / s.factor + smooth * x);
        }
      }
      break;
    }
    case RopeScalingType::kYarn: {
      const double fast = s.beta_fast == 0 ? 32.0 : s.beta_fast;
      const double slow = s.beta_slow == 0 ? 1.0 : s.beta_slow;
      const double max_pos = static_cast<double>(s.original_max_position);
      auto correction_dim = [&](double rotations) {
        return static_cast<double>(d) * std::log(max_pos / (rotations * 2 * M_PI)) /
               (2 * std::log(theta));
      };
      double lo = correction_dim(fast), hi = correction_dim(slow);
      if (s.truncate) lo = std::floor(lo), hi = std::ceil(hi);
      lo = std::max(lo, 0.0);
      hi = std::min(hi, static_cast<double>(d - 1));
      if (lo == hi) hi += 0.001;
      for (int64_t k = 0; k < half; ++k) {
        const double ramp = std::clamp((static_cast<double>(k) - lo) / (hi - lo), 0.0, 1.0);
        const double extrapolation = 1 - ramp;  // the share of the unscaled frequency
        const double x = f.inv_freq[k];
        f.inv_freq[k] =
            static_cast<float>(x / s.factor * (1 - extrapolation) + x * extrapolation);
      }
      double attention = s.attention_factor;
      if (attention == 0) {
        attention = s.mscale != 0 && s.mscale_all_dim != 0
                        ? YarnMscale(s.factor, s.mscale) / YarnMscale(s.factor, s.mscale_all_dim)
                        : YarnMscale(s.factor, 1.0);
      }
      f.attention_factor = static_cast<float>(attention);
      break;
    }
  }
  return f;
}

double MlaSoftmaxScaleFactor(const RopeScaling& s) {
  if (s.type != RopeScalingType::kYarn || s.mscale_all_dim == 0) return 1.0;
  const double m = YarnMscale(s.factor, s.mscale_all_dim);
  return m * m;
}

void ApplyRope(float* x, int64_t batch, int64_t len, int64_t heads, int64_t head_stride,
               int64_t row_stride, const RopeFrequencies& freq, int64_t pos0, bool interleaved) {
  const int64_t half = static_cast<int64_t>(freq.inv_freq.size());
  const std::vector<float>& inv_freq = freq.inv_freq;
  std::vector<float> cos_t(len * half), sin_t(len * half);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t k = 0; k < half; ++k) {
      const float angle = static_cast<float>(pos0 + t) * inv_freq[k];
      cos_t[t * half + k] = std::cos(angle) * freq.attention_factor;
      sin_t[t * half + k] = std::sin(angle) * freq.attention_factor;
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
