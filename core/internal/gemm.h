// Private: float32 matrix products on oneDNN matmul primitives, and the
// same with bfloat16 B (a layer's weights held in bf16).
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
// Exactly one of the strides is 1 (row-major or transposed storage). With
// `bf16` set instead of `data` the elements are bfloat16 there.
struct Mat {
  const float* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1;
  const uint16_t* bf16 = nullptr;

  static Mat RowMajor(const float* data, int64_t rows, int64_t cols, int64_t ld) {
    return {data, rows, cols, ld, 1};
  }
  // The transpose of a row-major [cols, rows] matrix with leading dimension ld.
  static Mat Transposed(const float* data, int64_t rows, int64_t cols, int64_t ld) {
    return {data, rows, cols, 1, ld};
  }
  static Mat RowMajor(const uint16_t* bf16, int64_t rows, int64_t cols, int64_t ld) {
    return {nullptr, rows, cols, ld, 1, bf16};
  }
  static Mat Transposed(const uint16_t* bf16, int64_t rows, int64_t cols, int64_t ld) {
    return {nullptr, rows, cols, 1, ld, bf16};
  }
};

// An nn.Linear weight [N, K], row-major and dense, held in float32 or in
// bfloat16 (exactly one set).
struct WeightRef {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
};

// C[M, N] = A[M, K] · B[K, N] (+ bias[N] broadcast over rows), or with
// `accumulate` C += A · B. C is row-major with leading dimension ldc.
// A bfloat16 B makes it a bf16 product: A's elements are rounded to
// bfloat16 first (as a bf16 GEMM's source), products accumulate in
// float32. A few rows (decode) against an nn.Linear weight go through a
// kernel of ours that reads it once (multiplying bf16 pairs with vdpbf16ps
// where oneDNN has a native bf16 matmul, Bf16MatmulAvailable, else
// widening in registers). Other products run oneDNN's bf16 matmul where it
// is preferred (Bf16MatmulPreferred), else B is widened to float32 a panel
// at a time for the float32 matmul. A may be bf16 too (then B must be):
// both go to oneDNN as they are where its bf16 matmul is available (a few
// rows) or preferred, else A is widened as above.
absl::Status Matmul(const Mat& a, const Mat& b, float* c, int64_t ldc, const float* bias = nullptr,
                    bool accumulate = false);

// y[M, N] = x[M, K] · Wᵀ + b for an nn.Linear weight W [N, K] (row-major,
// dense) and optional bias b [N]. x has leading dimension ldx, y has ldy.
absl::Status Linear(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
                    const float* bias, float* y, int64_t ldy);
// The same for a weight held in either dtype (bf16: as Matmul says).
absl::Status Linear(const float* x, int64_t m, int64_t k, int64_t ldx, WeightRef w, int64_t n,
                    const float* bias, float* y, int64_t ldy);

// Whether oneDNN runs bf16 matmuls natively here (avx512_core_bf16 or AMX,
// and the kernels not forced to AVX2 by ATTN_ISA=avx2). Decided once.
bool Bf16MatmulAvailable();

// Whether bf16 products of many rows (prefill's GEMMs) take oneDNN's native
// bf16 matmul rather than the float32 matmul on operands widened from
// bf16 (the same products: bf16 × bf16 is exact in float32, accumulation is
// float32 either way). Available, and at least as fast as sgemm: some CPUs
// (an Intel Xeon without AMX) run oneDNN 2.6's bf16 matmul at half the
// sgemm rate. Decided once, by timing both on a 256×512×512 product (best of
// five, a few milliseconds) at the first bf16 product; ATTN_BF16_GEMM=native
// or =widened decides it instead. Decode's few rows keep their vdpbf16ps
// kernel wherever it is available.
bool Bf16MatmulPreferred();

// The implementation oneDNN picked for a problem, e.g. "gemm:jit" (for
// benchmarks and diagnostics).
std::string MatmulImplName(const Mat& a, const Mat& b, int64_t ldc, bool bias,
                           bool accumulate = false);

// Number of primitives currently cached.
int64_t MatmulCacheSize();

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_GEMM_H_
