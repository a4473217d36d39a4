// Private: float32 matrix products on oneDNN matmul primitives.
//
// Primitives are built once per distinct problem (dims, strides, bias) and
// kept in a process-wide cache; execution uses a per-thread stream and a
// per-thread user scratchpad, so any number of threads may call these
// functions at once. Inside an OpenMP parallel region oneDNN runs the product
// on the calling thread; outside, on all OpenMP threads.
#ifndef ATTENTION_CORE_INTERNAL_GEMM_H_
#define ATTENTION_CORE_INTERNAL_GEMM_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace attention::internal {

// A 2-D matrix: element (r, c) at data[r * row_stride + c * col_stride].
// Exactly one of the strides is 1 (row-major or transposed storage).
struct Mat {
  const float* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1;

  static Mat RowMajor(const float* data, int64_t rows, int64_t cols, int64_t ld) {
    return {data, rows, cols, ld, 1};
  }
  // The transpose of a row-major [cols, rows] matrix with leading dimension ld.
  static Mat Transposed(const float* data, int64_t rows, int64_t cols, int64_t ld) {
    return {data, rows, cols, 1, ld};
  }
};

// C[M, N] = A[M, K] · B[K, N] (+ bias[N] broadcast over rows), or with
// `accumulate` C += A · B. C is row-major with leading dimension ldc.
absl::Status Matmul(const Mat& a, const Mat& b, float* c, int64_t ldc, const float* bias = nullptr,
                    bool accumulate = false);

// y[M, N] = x[M, K] · Wᵀ + b for an nn.Linear weight W [N, K] (row-major,
// dense) and optional bias b [N]. x has leading dimension ldx, y has ldy.
absl::Status Linear(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
                    const float* bias, float* y, int64_t ldy);

// The implementation oneDNN picked for a problem, e.g. "gemm:jit" (for
// benchmarks and diagnostics).
std::string MatmulImplName(const Mat& a, const Mat& b, int64_t ldc, bool bias,
                           bool accumulate = false);

// Number of primitives currently cached.
int64_t MatmulCacheSize();

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_GEMM_H_
