// The oneDNN matmul wrapper: products, strides, bias, and primitive reuse.
#include "core/internal/gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

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
        cases.push_back({at + " transposed", Mat::RowMajor(a, m, k, k), Mat::Transposed(b, k, n, k)});
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
