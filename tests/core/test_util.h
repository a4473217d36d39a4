// Shared test helpers: status assertions, random tensors, relative error.
#ifndef ATTENTION_TESTS_CORE_TEST_UTIL_H_
#define ATTENTION_TESTS_CORE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "core/workload.h"

#define ASSERT_OK(expr)                                      \
  do {                                                       \
    const ::absl::Status attn_s_ = ::attention::ToStatus(expr); \
    ASSERT_TRUE(attn_s_.ok()) << attn_s_;                    \
  } while (false)
#define EXPECT_OK(expr)                                      \
  do {                                                       \
    const ::absl::Status attn_s_ = ::attention::ToStatus(expr); \
    EXPECT_TRUE(attn_s_.ok()) << attn_s_;                    \
  } while (false)

namespace attention {

// Sanitizer builds run several times slower and keep shadow memory: timing
// bounds stretch by kSlowdown there and RSS checks are skipped.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
inline constexpr double kSlowdown = 10.0;
#else
inline constexpr bool kSanitized = false;
inline constexpr double kSlowdown = 1.0;
#endif

inline absl::Status ToStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// Standard-normal values from a fixed seed.
inline Tensor RandomTensor(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t(std::move(shape));
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& x : t.values()) x = dist(gen);
  return t;
}

// max |a - b| / max |b| over all elements (the max-norm relative error);
// infinity when the sizes differ.
inline double RelError(const float* a, const float* b, int64_t n) {
  double diff = 0, ref = 1e-30;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    ref = std::max(ref, std::abs(static_cast<double>(b[i])));
  }
  return diff / ref;
}

inline double RelError(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return INFINITY;
  return RelError(a.data(), b.data(), a.size());
}

// Rows [t0, t0 + n) of every batch row of x [B, L, D].
inline Tensor Slice(const Tensor& x, int64_t t0, int64_t n) {
  const int64_t b = x.dim(0), l = x.dim(1), d = x.dim(2);
  Tensor out({b, n, d});
  for (int64_t i = 0; i < b; ++i) {
    std::copy(x.data() + (i * l + t0) * d, x.data() + (i * l + t0 + n) * d,
              out.data() + i * n * d);
  }
  return out;
}

// Test names, not byte dumps, in gtest and ctest output.
inline void PrintTo(const Workload& w, std::ostream* os) { *os << w.name; }

}  // namespace attention

#endif  // ATTENTION_TESTS_CORE_TEST_UTIL_H_
