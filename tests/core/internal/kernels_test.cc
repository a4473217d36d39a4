// The ISA-dispatched kernels (AVX2 and AVX-512 builds) against plain loops:
// every row count 1..7, dimensions that leave vector tails, key counts that
// are not multiples of the 4-key blocks, and each softmax path.
#include "core/internal/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/internal/softmax.h"

namespace attention::internal {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Softmax of s[0, n) as the contract defines it, in double.
std::vector<double> ReferenceSoftmax(const std::vector<float>& s, float scale, int64_t visible,
                                     const uint8_t* keep) {
  const int64_t n = static_cast<int64_t>(s.size());
  std::vector<double> p(n);
  double m = -1e300;
  for (int64_t j = 0; j < n; ++j) {
    const bool kept = j < visible && (keep == nullptr || keep[j] != 0);
    p[j] = kept ? static_cast<double>(s[j]) * scale : static_cast<double>(kMaskedScore);
    m = std::max(m, p[j]);
  }
  double sum = 0;
  for (double& x : p) sum += (x = std::exp(x - m));
  for (double& x : p) x /= sum;
  return p;
}

class KernelsTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    previous_ = Kernels().isa;
    if (!SelectKernels(GetParam().c_str())) GTEST_SKIP() << "this CPU lacks " << GetParam();
  }
  void TearDown() override { SelectKernels(previous_.c_str()); }
  std::string previous_;
};

TEST_P(KernelsTest, SoftmaxRowMatchesReferenceOnEveryPath) {
  ASSERT_EQ(Kernels().isa, GetParam());
  const std::vector<uint8_t> keep = {1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1,
                                     1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1};
  const std::vector<uint8_t> none(keep.size(), 0);
  struct Case {
    int64_t n, visible;
    float scale;
    const uint8_t* keep;
  };
  const Case cases[] = {
      {37, 37, 0.3f, nullptr},     // fast path, vector tail
      {37, 20, 0.3f, nullptr},     // fast path, masked tail is exact zeros
      {37, 0, 0.3f, nullptr},      // fully masked: uniform
      {37, 37, -0.5f, nullptr},    // negative scale: general path
      {37, 30, 0.7f, keep.data()}, // keep mask
      {37, 37, 0.7f, none.data()}, // keep masks everything: uniform
      {5, 5, 1.0f, nullptr},       // shorter than a vector
  };
  for (const Case& c : cases) {
    for (bool normalize : {true, false}) {
      std::vector<float> s = Random(static_cast<size_t>(c.n), 7, 3.0f);
      const std::vector<double> want = ReferenceSoftmax(s, c.scale, c.visible, c.keep);
      const float sum = Kernels().softmax_row(s.data(), c.n, c.scale, c.visible, c.keep, 1,
                                              normalize);
      ASSERT_GE(sum, 1.0f);
      for (int64_t j = 0; j < c.n; ++j) {
        const double got = normalize ? s[j] : s[j] / sum;
        EXPECT_NEAR(got, want[j], 2e-6) << "n " << c.n << " visible " << c.visible << " j " << j;
      }
    }
  }
}

TEST_P(KernelsTest, UnnormalisedSoftmaxIsExpToAFewUlps) {
  // A row whose maximum is 0: without normalising, s[j] becomes exp(s[j]).
  // Arguments across exp's float range, down to its underflow (where the
  // result must be exactly 0).
  std::vector<float> s;
  for (double x = 0; x > -87.3; x -= 0.0137) s.push_back(static_cast<float>(x));
  const std::vector<float> args = s;
  s.push_back(-87.5f);
  s.push_back(-1e9f);
  (void)Kernels().softmax_row(s.data(), static_cast<int64_t>(s.size()), 1.0f,
                              static_cast<int64_t>(s.size()), nullptr, 1, /*normalize=*/false);
  for (size_t j = 0; j < args.size(); ++j) {
    const double want = std::exp(static_cast<double>(args[j]));
    EXPECT_NEAR(s[j], want, 4e-7 * want) << "exp(" << args[j] << ")";
  }
  EXPECT_EQ(s[args.size()], 0.0f);
  EXPECT_EQ(s[args.size() + 1], 0.0f);
}

TEST_P(KernelsTest, OnlineTilesEqualOneSoftmax) {
  // Tiles of 16 over 50 keys, the row seeing the first 41: the running max
  // and sum end as one softmax over the whole row.
  const int64_t n = 50, visible = 41, tile = 16;
  const std::vector<float> s = Random(n, 3, 2.0f);
  const std::vector<double> want = ReferenceSoftmax(s, 0.5f, visible, nullptr);
  std::vector<float> work = s;
  float m = -INFINITY, l = 0.0f;
  std::vector<double> acc(n, 0.0);  // each key's weight, rescaled as tiles arrive
  for (int64_t k0 = 0; k0 < n; k0 += tile) {
    const int64_t len = std::min(tile, n - k0);
    const float alpha = Kernels().online_softmax_tile(work.data() + k0, len, 0.5f, visible - k0,
                                                      nullptr, 1, &m, &l);
    for (int64_t j = 0; j < k0; ++j) acc[j] *= alpha;
    for (int64_t j = k0; j < k0 + len; ++j) acc[j] = work[j];
  }
  for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(acc[j] / l, want[j], 2e-6) << j;
}

TEST_P(KernelsTest, ScoresAndAccumulateMatchPlainLoops) {
  for (int64_t nr = 1; nr <= 7; ++nr) {
    // n = 23 fits one key block; 300 spans several, with a partial last
    // block and a tail below a step of keys.
    for (auto [d, n] : {std::pair<int64_t, int64_t>{1, 23}, {13, 23}, {64, 23}, {72, 23},
                        {128, 300}, {520, 300}}) {
      const int64_t stride = d + 3;
      const std::vector<float> q = Random(nr * d, 1), k = Random(n * stride, 2);
      std::vector<float> s(nr * n, -1.0f);
      std::vector<const float*> qp;
      std::vector<float*> sp;
      for (int64_t i = 0; i < nr; ++i) {
        qp.push_back(q.data() + i * d);
        sp.push_back(s.data() + i * n);
      }
      Kernels().scores(nr, qp.data(), d, k.data(), stride, n, sp.data());
      for (int64_t i = 0; i < nr; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          // float32 sums of d terms: the bound scales with their magnitudes.
          double want = 0, magnitude = 0;
          for (int64_t x = 0; x < d; ++x) {
            want += double{q[i * d + x]} * k[j * stride + x];
            magnitude += std::abs(double{q[i * d + x]} * k[j * stride + x]);
          }
          EXPECT_NEAR(s[i * n + j], want, 1e-4 + 1e-6 * magnitude)
              << "nr " << nr << " d " << d << " j " << j;
        }
      }
      // acc += p · v, starting from nonzero acc.
      std::vector<float> acc = Random(nr * d, 4);
      const std::vector<float> acc0 = acc;
      std::vector<const float*> pp(sp.begin(), sp.end());
      Kernels().accumulate(nr, pp.data(), k.data(), stride, n, d, acc.data());
      for (int64_t i = 0; i < nr; ++i) {
        for (int64_t x = 0; x < d; ++x) {
          double want = acc0[i * d + x], magnitude = std::abs(want);
          for (int64_t j = 0; j < n; ++j) {
            want += double{s[i * n + j]} * k[j * stride + x];
            magnitude += std::abs(double{s[i * n + j]} * k[j * stride + x]);
          }
          EXPECT_NEAR(acc[i * d + x], want, 1e-4 + 1e-6 * magnitude)
              << "nr " << nr << " d " << d << " x " << x;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, KernelsTest, testing::Values("avx2", "avx512"),
                         [](const auto& p) { return p.param; });

TEST_P(KernelsTest, NanScoresMakeTheirRowNan) {
  // Both softmax paths (no keep mask, scale > 0; and the masked one) and the
  // online tiles: a NaN score is a NaN sum and NaN weights (exp(NaN) was
  // once clamped to exp(88), a finite weight).
  const std::vector<uint8_t> keep(37, 1);
  for (const uint8_t* k : {static_cast<const uint8_t*>(nullptr), keep.data()}) {
    for (int64_t at : {0, 9, 36}) {
      std::vector<float> s = Random(37, 5);
      s[at] = NAN;
      const float sum = Kernels().softmax_row(s.data(), 37, 0.5f, 37, k, 1, /*normalize=*/true);
      EXPECT_TRUE(std::isnan(sum)) << at;
      for (float x : s) EXPECT_TRUE(std::isnan(x)) << at;
      s = Random(37, 5);
      s[at] = NAN;
      float m = -INFINITY, l = 0.0f;
      Kernels().online_softmax_tile(s.data(), 20, 0.5f, 20, k, 1, &m, &l);
      Kernels().online_softmax_tile(s.data() + 20, 17, 0.5f, 17, k, 1, &m, &l);
      EXPECT_TRUE(std::isnan(l)) << at;
    }
  }
}

TEST(Kernels, UnknownIsaIsRefused) {
  const std::string before = Kernels().isa;
  EXPECT_FALSE(SelectKernels("sse2"));
  EXPECT_EQ(Kernels().isa, before);
}

}  // namespace
}  // namespace attention::internal
