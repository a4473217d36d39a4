// The ISA-dispatched kernels (AVX2 and AVX-512 builds) against plain loops:
// every row count 1..7, dimensions that leave vector tails, key counts that
// are not multiples of the 4-key blocks, and each softmax path; the decode
// loops over K and V rows of every stored type (KvElem).
#include "core/internal/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
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

// A whole score row through the online softmax as one tile (what every
// path runs): s[j] <- exp(s[j]·scale - max), masked as the tile says, and
// with `normalize` divided by the sum, which is returned.
float SoftmaxRow(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                 bool normalize) {
  float m = -INFINITY, l = 0.0f;
  (void)Kernels().online_softmax_tile(s, n, scale, visible, keep, 1, &m, &l);
  if (normalize) {
    for (int64_t j = 0; j < n; ++j) s[j] /= l;
  }
  return l;
}

TEST_P(KernelsTest, SoftmaxRowMatchesReferenceOnEveryPath) {
  ASSERT_EQ(Kernels().isa, GetParam());
  const std::vector<uint8_t> keep = {1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1,
                                     1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1};
  const std::vector<uint8_t> none(keep.size(), 0);
  struct Case {
    int64_t n, visible;
    float scale;
    const uint8_t* keep;
  };
  const Case cases[] = {
      {37, 37, 0.3f, nullptr},      // fast path, vector tail
      {37, 20, 0.3f, nullptr},      // fast path, masked tail is exact zeros
      {37, 0, 0.3f, nullptr},       // fully masked: uniform
      {37, 37, -0.5f, nullptr},     // negative scale: general path
      {37, 30, 0.7f, keep.data()},  // keep mask
      {37, 37, 0.7f, none.data()},  // keep masks everything: uniform
      {5, 5, 1.0f, nullptr},        // shorter than a vector
  };
  for (const Case& c : cases) {
    for (bool normalize : {true, false}) {
      std::vector<float> s = Random(static_cast<size_t>(c.n), 7, 3.0f);
      const std::vector<double> want = ReferenceSoftmax(s, c.scale, c.visible, c.keep);
      const float sum =
          SoftmaxRow(s.data(), c.n, c.scale, c.visible, c.keep, normalize);
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
  (void)SoftmaxRow(s.data(), static_cast<int64_t>(s.size()), 1.0f,
                   static_cast<int64_t>(s.size()), nullptr, /*normalize=*/false);
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
    for (auto [d, n] : {std::pair<int64_t, int64_t>{1, 23},
                        {13, 23},
                        {64, 23},
                        {72, 23},
                        {128, 300},
                        {520, 300}}) {
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

// Rows of K or V in one stored type, each row alone in its own allocation's
// end: the last row ends where the storage does (a read past a row's last
// element is a read past the allocation, which ASan builds report).
class StoredRows {
 public:
  // Random values of `elem`: float32 and bfloat16 (rounded to nearest even
  // from float32) over several binades, float16 from random bits (exponents
  // 0 to 20: denormals among them), int8 in [-128, 127] with scales over
  // four decades.
  StoredRows(KvElem elem, int64_t n, int64_t d, int64_t stride, uint32_t seed)
      : elem_(elem), stride_(stride), scale_stride_(3) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> binade(-6, 6), f16_exponent(0, 20), bits(0, 0xffff),
        i8(-128, 127);
    const int64_t size = (n - 1) * stride + d;
    switch (elem) {
      case KvElem::kF32:
        f32_.resize(size);
        for (float& x : f32_) x = std::ldexp(normal(gen), binade(gen));
        break;
      case KvElem::kBf16:
        u16_.resize(size);
        for (uint16_t& x : u16_) x = ToBf16(std::ldexp(normal(gen), binade(gen)));
        break;
      case KvElem::kF16:
        u16_.resize(size);
        for (uint16_t& x : u16_) {
          x = static_cast<uint16_t>((bits(gen) & 0x83ff) | f16_exponent(gen) << 10);
        }
        break;
      case KvElem::kI8:
        i8_.resize(size);
        for (int8_t& x : i8_) x = static_cast<int8_t>(i8(gen));
        scales_.resize((n - 1) * scale_stride_ + 1);
        for (float& x : scales_) {
          x = std::pow(10.0f, std::uniform_real_distribution<float>(-3.0f, 1.0f)(gen));
        }
        break;
    }
  }

  static uint16_t ToBf16(float x) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    return static_cast<uint16_t>((b + 0x7fff + (b >> 16 & 1)) >> 16);
  }

  // Sets element x of row j to a float16 / bfloat16 pattern (not for int8).
  void SetBits(int64_t j, int64_t x, uint16_t bits) { u16_[j * stride_ + x] = bits; }

  KvRows Rows() const {
    const void* data = elem_ == KvElem::kF32  ? static_cast<const void*>(f32_.data())
                       : elem_ == KvElem::kI8 ? static_cast<const void*>(i8_.data())
                                              : static_cast<const void*>(u16_.data());
    return {data, stride_, scales_.empty() ? nullptr : scales_.data(), scale_stride_};
  }

  // Element x of row j, converted exactly (int8: without its scale).
  double Raw(int64_t j, int64_t x) const {
    const int64_t at = j * stride_ + x;
    switch (elem_) {
      case KvElem::kF32:
        return f32_[at];
      case KvElem::kBf16: {
        const uint32_t b = uint32_t{u16_[at]} << 16;
        float f;
        std::memcpy(&f, &b, 4);
        return f;
      }
      case KvElem::kF16: {
        const int sign = u16_[at] >> 15, exponent = u16_[at] >> 10 & 0x1f,
                  mantissa = u16_[at] & 0x3ff;
        const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24)
                                 : exponent == 31
                                     ? (mantissa == 0 ? std::numeric_limits<double>::infinity()
                                                      : std::numeric_limits<double>::quiet_NaN())
                                     : std::ldexp(1024 + mantissa, exponent - 25);
        return sign != 0 ? -magnitude : magnitude;
      }
      case KvElem::kI8:
        return i8_[at];
    }
    return 0;
  }
  // The scale of row j (1 for the types without one).
  double Scale(int64_t j) const { return elem_ == KvElem::kI8 ? scales_[j * scale_stride_] : 1.0; }

 private:
  KvElem elem_;
  int64_t stride_, scale_stride_;
  std::vector<float> f32_, scales_;
  std::vector<uint16_t> u16_;
  std::vector<int8_t> i8_;
};

// `got` against a double reference: NaN where it is NaN, the same infinity,
// else within float32 rounding of `terms` additions (each rounds by at most
// 2^-24 of the running sum, itself at most `magnitude`), plus the scale's.
void ExpectMatches(float got, double want, double magnitude, int64_t terms, const char* what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << " got " << got;
  } else if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what;
  } else {
    EXPECT_LE(std::abs(got - want), (terms + 2) * 0x1p-24 * magnitude)
        << what << " got " << got << " want " << want;
  }
}

constexpr KvElem kAllElems[] = {KvElem::kF32, KvElem::kBf16, KvElem::kF16, KvElem::kI8};
const char* ElemName(KvElem e) {
  switch (e) {
    case KvElem::kF32:
      return "f32";
    case KvElem::kBf16:
      return "bf16";
    case KvElem::kF16:
      return "f16";
    case KvElem::kI8:
      return "i8";
  }
  return "?";
}

// scores_kv[elem]: s[i][j] = q[i] · key(j) against the double sum of the
// same stored values.
void CheckScoresKv(KvElem elem, const StoredRows& k, int64_t nr, int64_t dk, int64_t n,
                   const std::vector<float>& q, const std::string& where) {
  std::vector<float> s(nr * n, -1.0f);
  std::vector<const float*> qp;
  std::vector<float*> sp;
  for (int64_t i = 0; i < nr; ++i) {
    qp.push_back(q.data() + i * dk);
    sp.push_back(s.data() + i * n);
  }
  Kernels().scores_kv[static_cast<int>(elem)](nr, qp.data(), dk, k.Rows(), n, sp.data());
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0, magnitude = 0;
      for (int64_t x = 0; x < dk; ++x) {
        dot += double{q[i * dk + x]} * k.Raw(j, x);
        magnitude += std::abs(double{q[i * dk + x]} * k.Raw(j, x));
      }
      const std::string what = where + " i " + std::to_string(i) + " j " + std::to_string(j);
      ExpectMatches(s[i * n + j], dot * k.Scale(j), magnitude * k.Scale(j), dk, what.c_str());
    }
  }
}

// accumulate_kv[elem]: acc[i·dv + x] += Σ_j p[i][j] · value(j)[x] from a
// nonzero acc, against the double sum of the same stored values.
void CheckAccumulateKv(KvElem elem, const StoredRows& v, int64_t nr, int64_t dv, int64_t n,
                       const std::vector<float>& p, const std::string& where) {
  std::vector<float> acc = Random(nr * dv, 4);
  const std::vector<float> acc0 = acc;
  std::vector<const float*> pp;
  for (int64_t i = 0; i < nr; ++i) pp.push_back(p.data() + i * n);
  Kernels().accumulate_kv[static_cast<int>(elem)](nr, pp.data(), v.Rows(), n, dv, acc.data());
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t x = 0; x < dv; ++x) {
      double want = acc0[i * dv + x], magnitude = std::abs(want);
      for (int64_t j = 0; j < n; ++j) {
        const double term = double{p[i * n + j]} * v.Scale(j) * v.Raw(j, x);
        want += term;
        magnitude += std::abs(term);
      }
      const std::string what = where + " i " + std::to_string(i) + " x " + std::to_string(x);
      ExpectMatches(acc[i * dv + x], want, magnitude, 2 * n, what.c_str());
    }
  }
}

TEST_P(KernelsTest, StoredTypeLoopsMatchDoubleReference) {
  // Row counts 1..7 (accumulate's range; row_attention passes scores up to
  // kMaxFewRows = 32 rows, four at a time), dimensions with and without
  // vector tails, key counts below, at and past a step of keys; strides
  // longer than the rows.
  for (KvElem elem : kAllElems) {
    for (int64_t d : {1, 7, 8, 15, 16, 33, 64, 128}) {
      for (int64_t n : {1, 3, 17, 100}) {
        const StoredRows rows(elem, n, d, d + 5, static_cast<uint32_t>(d * 1000 + n));
        for (int64_t nr : {1, 2, 3, 4, 5, 6, 7, 13, 32}) {
          const std::string where = std::string(ElemName(elem)) + " nr " + std::to_string(nr) +
                                    " d " + std::to_string(d) + " n " + std::to_string(n);
          CheckScoresKv(elem, rows, nr, d, n, Random(nr * d, 1), where);
          if (nr <= 7) CheckAccumulateKv(elem, rows, nr, d, n, Random(nr * n, 2), where);
        }
      }
    }
  }
}

TEST_P(KernelsTest, StoredInfinitiesAndNanPropagate) {
  // One key / value row with +inf, one with -inf, one with NaN, in the
  // vector body and in the tail, for both 16-bit types.
  for (KvElem elem : {KvElem::kBf16, KvElem::kF16}) {
    const uint16_t inf = elem == KvElem::kBf16 ? 0x7f80 : 0x7c00;
    const uint16_t nan = elem == KvElem::kBf16 ? 0x7fc0 : 0x7e00;
    for (int64_t d : {33, 128}) {
      const int64_t n = 17;
      StoredRows rows(elem, n, d, d + 5, 9);
      rows.SetBits(2, 3, inf);
      rows.SetBits(5, d - 1, static_cast<uint16_t>(inf | 0x8000));
      rows.SetBits(11, d / 2, nan);
      const std::string where = std::string(ElemName(elem)) + " d " + std::to_string(d);
      for (int64_t nr : {1, 4, 7}) {
        CheckScoresKv(elem, rows, nr, d, n, Random(nr * d, 1), where);
        // Positive weights: columns 3 and d - 1 infinite, d / 2 NaN.
        std::vector<float> p = Random(nr * n, 2);
        for (float& w : p) w = std::abs(w) + 0.01f;
        CheckAccumulateKv(elem, rows, nr, d, n, p, where);
      }
    }
  }
}

TEST_P(KernelsTest, Float32StoredRowsAreTheFloatLoops) {
  const int64_t nr = 5, d = 72, n = 300, stride = 75;
  const StoredRows rows(KvElem::kF32, n, d, stride, 3);
  const KvRows k = rows.Rows();
  const float* kf = static_cast<const float*>(k.data);
  const std::vector<float> q = Random(nr * d, 1), p = Random(nr * n, 2);
  std::vector<float> s(nr * n), s_kv(nr * n), acc(nr * d, 0.5f), acc_kv = acc;
  std::vector<const float*> qp, pp;
  std::vector<float*> sp, sp_kv;
  for (int64_t i = 0; i < nr; ++i) {
    qp.push_back(q.data() + i * d);
    pp.push_back(p.data() + i * n);
    sp.push_back(s.data() + i * n);
    sp_kv.push_back(s_kv.data() + i * n);
  }
  const int f32 = static_cast<int>(KvElem::kF32);
  Kernels().scores(nr, qp.data(), d, kf, stride, n, sp.data());
  Kernels().scores_kv[f32](nr, qp.data(), d, k, n, sp_kv.data());
  EXPECT_EQ(s, s_kv);
  Kernels().accumulate(nr, pp.data(), kf, stride, n, d, acc.data());
  Kernels().accumulate_kv[f32](nr, pp.data(), k, n, d, acc_kv.data());
  EXPECT_EQ(acc, acc_kv);
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
      const float sum = SoftmaxRow(s.data(), 37, 0.5f, 37, k, /*normalize=*/true);
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
