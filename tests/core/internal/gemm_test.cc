// The oneDNN matmul wrapper: products, strides, bias, and primitive reuse.
#include "core/internal/gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "tests/core/test_util.h"

namespace attention::internal {
namespace {

// Plain C = A·B for checking.
std::vector<float> Naive(const Mat& a, const Mat& b, const float* bias) {
  std::vector<float> c(a.rows * b.cols);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < b.cols; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < a.cols; ++k) {
        s += static_cast<double>(a.data[i * a.row_stride + k * a.col_stride]) *
             b.data[k * b.row_stride + j * b.col_stride];
      }
      c[i * b.cols + j] = static_cast<float>(s);
    }
  return c;
}

float RoundBf16(float x) { return Bfloat16ToFloat(FloatToBfloat16(x)); }

// A bf16 B: A's elements are rounded to bf16, B's are bf16, products
// accumulate in float32. Checked against double sums of the rounded
// operands, on every path: few rows (our kernel; K and N with tails), many
// rows (oneDNN bf16 where native, widened panels elsewhere), a row-major B
// (the widened path or oneDNN), with bias, accumulation and strided A, both
// outside and inside a parallel region.
TEST(Gemm, Bf16WeightsMatchDoubleSumsOfTheRoundedOperands) {
  struct Shape {
    int64_t m, k, n;
    bool transposed;
  };
  for (const Shape& s : {Shape{1, 13, 5, true}, Shape{3, 1030, 7, true}, Shape{16, 64, 64, true},
                         Shape{17, 100, 9, true}, Shape{40, 300, 37, true}, Shape{2, 24, 11, false},
                         Shape{33, 70, 18, false}}) {
    for (bool inside : {false, true}) {
      for (bool accumulate : {false, true}) {
        SCOPED_TRACE(absl::StrCat(s.m, "x", s.k, "x", s.n, s.transposed ? " T" : " N",
                                  inside ? " in team" : "", accumulate ? " +=" : ""));
        const int64_t lda = s.k + 3;
        const Tensor a = RandomTensor({s.m, lda}, 4);
        const Tensor bf = RandomTensor({s.k * s.n}, 5);
        std::vector<uint16_t> b16(bf.size());
        FloatToBfloat16(bf.data(), b16.data(), bf.size());
        const Tensor bias = RandomTensor({s.n}, 6);
        const Mat am = Mat::RowMajor(a.data(), s.m, s.k, lda);
        const Mat bm = s.transposed ? Mat::Transposed(b16.data(), s.k, s.n, s.k)
                                    : Mat::RowMajor(b16.data(), s.k, s.n, s.n);
        std::vector<float> c(s.m * s.n, 0.5f), want(s.m * s.n);
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j) {
            double sum = bias.data()[j] + (accumulate ? 0.5 : 0.0);
            for (int64_t t = 0; t < s.k; ++t) {
              sum += static_cast<double>(RoundBf16(a.data()[i * lda + t])) *
                     Bfloat16ToFloat(b16[t * bm.row_stride + j * bm.col_stride]);
            }
            want[i * s.n + j] = static_cast<float>(sum);
          }
        absl::Status status;
#pragma omp parallel num_threads(2) if (inside)
        {
          if (omp_get_thread_num() == 0) {
            status = Matmul(am, bm, c.data(), s.n, bias.data(), accumulate);
          }
        }
        ASSERT_OK(status);
        EXPECT_LT(RelError(c.data(), want.data(), s.m * s.n), 1e-5);
      }
    }
  }
}

TEST(Gemm, Bf16LinearEqualsTheFloatLinearOfRoundedOperands) {
  const int64_t m = 5, k = 96, n = 40;
  const Tensor x = RandomTensor({m, k}, 7), w = RandomTensor({n, k}, 8), b = RandomTensor({n}, 9);
  std::vector<uint16_t> w16(w.size());
  FloatToBfloat16(w.data(), w16.data(), w.size());
  Tensor xr = x, wr = w;
  RoundToBfloat16(xr.data(), xr.size());
  RoundToBfloat16(wr.data(), wr.size());
  std::vector<float> got(m * n), want(m * n);
  ASSERT_OK(Linear(x.data(), m, k, k, WeightRef{nullptr, w16.data()}, n, b.data(), got.data(), n));
  ASSERT_OK(Linear(xr.data(), m, k, k, wr.data(), n, b.data(), want.data(), n));
  EXPECT_LT(RelError(got.data(), want.data(), m * n), 1e-5);
  // And the float32 weight through the same entry point is the float32 Linear.
  ASSERT_OK(Linear(x.data(), m, k, k, WeightRef{w.data(), nullptr}, n, b.data(), got.data(), n));
  ASSERT_OK(Linear(x.data(), m, k, k, w.data(), n, b.data(), want.data(), n));
  EXPECT_EQ(got, want);
}

TEST(Gemm, TransposedStridedOperandsMatchNaive) {
  const Tensor a = RandomTensor({7, 20}, 1);   // read as [7, 13] with ld 20
  const Tensor bt = RandomTensor({9, 16}, 2);  // Bᵀ rows: B = [13, 9] with ld 16
  const Mat am = Mat::RowMajor(a.data(), 7, 13, 20);
  const Mat bm = Mat::Transposed(bt.data(), 13, 9, 16);
  std::vector<float> c(7 * 9);
  ASSERT_OK(Matmul(am, bm, c.data(), 9));
  const auto want = Naive(am, bm, nullptr);
  EXPECT_LT(RelError(c.data(), want.data(), 63), 1e-6);
}

// Narrow products (N or K of 1..5, as attention's P·V for Dv = 1 or Q·Kᵀ
// for Dk = 1) with B row-major and transposed, outside a parallel region
// (the primitive) and inside one (sgemm for few rows): every valid layout
// computes, none is refused.
TEST(Gemm, NarrowOperandsAreNeverRefused) {
  struct Case {
    std::string name;
    Mat a, b;
  };
  const Tensor a_data = RandomTensor({40 * 4100}, 1), b_data = RandomTensor({4100 * 8}, 2);
  std::vector<Case> cases;
  for (int64_t m : {1, 5, 16, 33}) {
    for (int64_t k : {1, 2, 512, 4097}) {
      for (int64_t n : {1, 2, 3, 5}) {
        const float* a = a_data.data();
        const float* b = b_data.data();
        const std::string at = absl::StrCat(m, "x", k, "·", k, "x", n);
        cases.push_back({at + " row-major", Mat::RowMajor(a, m, k, k), Mat::RowMajor(b, k, n, n)});
        cases.push_back(
            {at + " transposed", Mat::RowMajor(a, m, k, k), Mat::Transposed(b, k, n, k)});
      }
    }
  }
  for (bool in_team : {false, true}) {
    std::vector<absl::Status> status(cases.size());
    std::vector<std::vector<float>> c(cases.size());
    auto run_all = [&] {
      for (size_t i = 0; i < cases.size(); ++i) {
        c[i].assign(cases[i].a.rows * cases[i].b.cols, 0.0f);
        status[i] = Matmul(cases[i].a, cases[i].b, c[i].data(), cases[i].b.cols);
      }
    };
    if (in_team) {
#pragma omp parallel num_threads(2)
      {
#pragma omp single
        {
          EXPECT_TRUE(omp_in_parallel());
          run_all();
        }
      }
    } else {
      run_all();
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(cases[i].name + (in_team ? " in a team" : " alone"));
      ASSERT_OK(status[i]);
      const auto want = Naive(cases[i].a, cases[i].b, nullptr);
      EXPECT_LT(RelError(c[i].data(), want.data(), static_cast<int64_t>(want.size())), 1e-5);
    }
  }
}

TEST(Gemm, LinearAddsBias) {
  const Tensor x = RandomTensor({5, 12}, 1), w = RandomTensor({6, 12}, 2), b = RandomTensor({6}, 3);
  std::vector<float> y(5 * 6);
  ASSERT_OK(Linear(x.data(), 5, 12, 12, w.data(), 6, b.data(), y.data(), 6));
  const auto want =
      Naive(Mat::RowMajor(x.data(), 5, 12, 12), Mat::Transposed(w.data(), 12, 6, 12), b.data());
  EXPECT_LT(RelError(y.data(), want.data(), 30), 1e-6);
}

TEST(Gemm, PrimitivesAreBuiltOncePerShape) {
  const Tensor a = RandomTensor({31, 17}, 1), b = RandomTensor({17, 23}, 2);
  std::vector<float> c(31 * 23);
  const Mat am = Mat::RowMajor(a.data(), 31, 17, 17), bm = Mat::RowMajor(b.data(), 17, 23, 23);
  ASSERT_OK(Matmul(am, bm, c.data(), 23));
  const int64_t after_first = MatmulCacheSize();
  for (int i = 0; i < 5; ++i) ASSERT_OK(Matmul(am, bm, c.data(), 23));
  EXPECT_EQ(MatmulCacheSize(), after_first);
  ASSERT_OK(Matmul(Mat::RowMajor(a.data(), 30, 17, 17), bm, c.data(), 23));  // new M
  EXPECT_EQ(MatmulCacheSize(), after_first + 1);
}

TEST(Gemm, JitImplementationsAreUsedNotReference) {
  float x = 0;
  const std::string qk = MatmulImplName(Mat::RowMajor(&x, 64, 128, 4096),
                                        Mat::Transposed(&x, 128, 2048, 1024), 2048, false);
  const std::string pv = MatmulImplName(Mat::RowMajor(&x, 64, 2048, 2048),
                                        Mat::RowMajor(&x, 2048, 128, 1024), 4096, false);
  EXPECT_EQ(qk.find("ref"), std::string::npos) << qk;
  EXPECT_EQ(pv.find("ref"), std::string::npos) << pv;
}

}  // namespace
}  // namespace attention::internal
