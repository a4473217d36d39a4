// The terms of real models' attention (core/sdpa.h): sliding windows,
// logit soft-capping, learned sinks and the log-sum-exp, on every path the
// planner picks, against the double-precision reference; and the LSE's
// promise, that attentions over key shards merge exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/sdpa.h"
#include "core/workload.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

// Shapes that take each path of the planner (sdpa_plan.h): few rows,
// whole rows, flash key tiles, weights, and rows that see no key.
const Workload kShapes[] = {
    {"DecodeLq1", 2, 8, 2, 1, 600, 16, 8},
    {"DraftTokens", 1, 4, 1, 3, 300, 16, 16},
    {"WholeRows", 1, 2, 1, 64, 300, 16, 8},
    {"FlashKeyTiles", 1, 2, 1, 40, 3000, 16, 8},
    {"QueryTiles", 1, 2, 2, 300, 257, 24, 40},
    {"MoreQueriesThanKeys", 2, 2, 1, 9, 4, 8, 8},
    {"MqaDecode32Heads", 1, 32, 1, 1, 1300, 24, 40},
};

enum class Terms { kWindow, kWindowKeyLengths, kWindowKeep, kSoftcap, kSinks, kLse, kAll };

std::string TermsName(Terms t) {
  switch (t) {
    case Terms::kWindow:
      return "Window";
    case Terms::kWindowKeyLengths:
      return "WindowKeyLengths";
    case Terms::kWindowKeep:
      return "WindowKeep";
    case Terms::kSoftcap:
      return "Softcap";
    case Terms::kSinks:
      return "Sinks";
    case Terms::kLse:
      return "Lse";
    case Terms::kAll:
      return "All";
  }
  return "";
}

void PrintTo(Terms t, std::ostream* os) { *os << TermsName(t); }

// The call's options: the mask, sinks and soft-cap of `t` for workload w.
struct Case {
  MaskSpec mask;
  SdpaOptions options;
};

Case MakeCase(Terms t, const Workload& w) {
  Case c;
  const int64_t window = std::max<int64_t>(1, w.lk / 5);
  const bool all = t == Terms::kAll;
  if (t == Terms::kWindow || t == Terms::kWindowKeyLengths || t == Terms::kWindowKeep || all) {
    c.mask.sliding_window = window;
  }
  if (t == Terms::kWindowKeyLengths || all) {
    // Row 0 sees every key; the others stop short, so that late queries
    // fall past their keys (rows that see none: they average all values).
    for (int64_t b = 0; b < w.b; ++b) c.mask.key_lengths.push_back(b == 0 ? w.lk : 1 + w.lk / 2);
  }
  if (t == Terms::kWindowKeep || all) {
    c.mask.keep_shape = {w.lq, w.lk};
    c.mask.keep.resize(static_cast<size_t>(w.lq * w.lk));
    for (size_t x = 0; x < c.mask.keep.size(); ++x) c.mask.keep[x] = (x * 7919) % 10 < 7;
  }
  if (t == Terms::kSoftcap || all) c.options.logit_softcap = 1.5f;
  if (t == Terms::kSinks || all) {
    for (int64_t h = 0; h < w.hq; ++h) c.options.sinks.push_back(0.25f * static_cast<float>(h % 5) - 0.5f);
  }
  c.options.return_lse = true;
  return c;
}

// LSE rows compared where finite, and -inf in the same places.
void ExpectLseClose(const Tensor& got, const Tensor& want, double tolerance) {
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t x = 0; x < got.size(); ++x) {
    const float a = got.data()[x], b = want.data()[x];
    if (std::isinf(b)) {
      EXPECT_EQ(a, b) << "lse[" << x << "]";
      continue;
    }
    EXPECT_NEAR(a, b, tolerance * (1.0 + std::abs(b))) << "lse[" << x << "]";
  }
}

class SdpaTermsSweep : public testing::TestWithParam<std::tuple<Workload, Terms>> {};

TEST_P(SdpaTermsSweep, MatchesDoublePrecisionReference) {
  const auto& [w, terms] = GetParam();
  const Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 1);
  const Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 2);
  const Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 3);
  Case c = MakeCase(terms, w);
  c.options.scale = 2.0f / std::sqrt(static_cast<float>(w.dk));  // scores that the cap bends
  c.options.return_weights = true;
  auto ref = AttendReference(q, k, v, c.mask, c.options);
  ASSERT_OK(ref);
  for (bool weights : {false, true}) {
    SCOPED_TRACE(weights ? "with weights" : "without weights");
    SdpaOptions options = c.options;
    options.return_weights = weights;
    auto got = Attend(q, k, v, c.mask, options);
    ASSERT_OK(got);
    EXPECT_LT(RelError(got->output, ref->output), w.Tolerance());
    if (weights) {
      EXPECT_LT(RelError(got->weights, ref->weights), w.Tolerance());
    }
    ExpectLseClose(got->lse, ref->lse, w.Tolerance());
  }
  // bf16 compute: within its bound of the reference on rounded operands.
  SdpaOptions bf16 = c.options;
  bf16.compute_dtype = DType::kBfloat16;
  bf16.return_weights = false;
  auto ref16 = AttendReference(q, k, v, c.mask, bf16);
  auto got16 = Attend(q, k, v, c.mask, bf16);
  ASSERT_OK(ref16);
  ASSERT_OK(got16);
  EXPECT_LT(RelError(got16->output, ref16->output), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Paths, SdpaTermsSweep,
                         testing::Combine(testing::ValuesIn(kShapes),
                                          testing::Values(Terms::kWindow, Terms::kWindowKeyLengths,
                                                          Terms::kWindowKeep, Terms::kSoftcap,
                                                          Terms::kSinks, Terms::kLse, Terms::kAll)),
                         [](const auto& p) {
                           return std::get<0>(p.param).name + "_" + TermsName(std::get<1>(p.param));
                         });

// The reference written out for one row: what a window, a cap and a sink mean.
TEST(SdpaTerms, ReferenceIsTheDefinition) {
  const int64_t lk = 6, d = 4;
  const Tensor q = RandomTensor({1, 1, 1, d}, 7), k = RandomTensor({1, 1, lk, d}, 8);
  const Tensor v = RandomTensor({1, 1, lk, d}, 9);
  MaskSpec mask;
  mask.sliding_window = 3;  // the one query (position 5) sees keys 3, 4, 5
  SdpaOptions options;
  options.logit_softcap = 0.5f;
  options.sinks = {0.3f};
  options.return_lse = true;
  auto got = AttendReference(q, k, v, mask, options);
  ASSERT_OK(got);
  double s[lk], sum = std::exp(0.3), out[d] = {0, 0, 0, 0};
  for (int64_t j = 3; j < lk; ++j) {
    double dot = 0;
    for (int64_t x = 0; x < d; ++x) dot += q.data()[x] * k.data()[j * d + x];
    s[j] = 0.5 * std::tanh(dot / std::sqrt(4.0) / 0.5);
    sum += std::exp(s[j]);
  }
  for (int64_t j = 3; j < lk; ++j) {
    for (int64_t x = 0; x < d; ++x) out[x] += std::exp(s[j]) / sum * v.data()[j * d + x];
  }
  for (int64_t x = 0; x < d; ++x) EXPECT_NEAR(got->output.data()[x], out[x], 1e-6);
  EXPECT_NEAR(got->lse.data()[0], std::log(sum), 1e-6);
}

// Two servers each holding half the keys: their outputs and LSEs merge into
// the output over all keys (the sinks go with one shard).
TEST(SdpaTerms, LseMergesKeyShardsExactly) {
  for (const Workload& w : kShapes) {
    SCOPED_TRACE(w.name);
    if (w.lk < 2) continue;
    const Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 11);
    const Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 12);
    const Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 13);
    const int64_t split = w.lk / 2 + 1;
    auto slice = [&](const Tensor& t, int64_t j0, int64_t j1) {
      Tensor s({t.dim(0), t.dim(1), j1 - j0, t.dim(3)});
      for (int64_t r = 0; r < t.dim(0) * t.dim(1); ++r) {
        std::copy_n(t.data() + (r * t.dim(2) + j0) * t.dim(3), (j1 - j0) * t.dim(3),
                    s.data() + r * (j1 - j0) * t.dim(3));
      }
      return s;
    };
    SdpaOptions with_sinks;
    for (int64_t h = 0; h < w.hq; ++h) with_sinks.sinks.push_back(0.1f * static_cast<float>(h));
    with_sinks.return_lse = true;
    SdpaOptions plain;
    plain.return_lse = true;
    auto all = Attend(q, k, v, {}, with_sinks);
    auto a = Attend(q, slice(k, 0, split), slice(v, 0, split), {}, with_sinks);
    auto b = Attend(q, slice(k, split, w.lk), slice(v, split, w.lk), {}, plain);
    ASSERT_OK(all);
    ASSERT_OK(a);
    ASSERT_OK(b);
    Tensor merged(all->output.shape());
    for (int64_t r = 0; r < all->lse.size(); ++r) {
      const double la = a->lse.data()[r], lb = b->lse.data()[r];
      const double l = std::max(la, lb) + std::log1p(std::exp(-std::abs(la - lb)));
      EXPECT_NEAR(l, all->lse.data()[r], 1e-5 * (1 + std::abs(l)));
      for (int64_t x = 0; x < w.dv; ++x) {
        merged.data()[r * w.dv + x] =
            static_cast<float>(std::exp(la - l) * a->output.data()[r * w.dv + x] +
                               std::exp(lb - l) * b->output.data()[r * w.dv + x]);
      }
    }
    EXPECT_LT(RelError(merged, all->output), w.Tolerance());
  }
}

// Rows that see no key (a window past the key length, or queries before the
// first key) average all Lk values, as every score of theirs is masked, and
// their LSE is -inf; with a sink they give 0 and the sink's logit.
TEST(SdpaTerms, RowsThatSeeNoKeyAverageAllValues) {
  const Workload w{"none", 1, 2, 1, 6, 8, 8, 4};
  const Tensor q = RandomTensor({1, 2, 6, 8}, 21), k = RandomTensor({1, 1, 8, 8}, 22);
  const Tensor v = RandomTensor({1, 1, 8, 4}, 23);
  MaskSpec mask;
  mask.sliding_window = 2;
  mask.key_lengths = {3};  // positions 2..7: rows 3..5 (positions 5..7) see no key < 3
  SdpaOptions options;
  options.return_lse = true;
  auto got = Attend(q, k, v, mask, options);
  ASSERT_OK(got);
  for (int64_t x = 0; x < 4; ++x) {
    double mean = 0;
    for (int64_t j = 0; j < 8; ++j) mean += v.data()[j * 4 + x] / 8.0;
    EXPECT_NEAR(got->output.data()[5 * 4 + x], mean, 1e-6);
  }
  EXPECT_EQ(got->lse.data()[5], -INFINITY);
  EXPECT_TRUE(std::isfinite(got->lse.data()[0]));
  options.sinks = {0.7f, -0.2f};
  auto sunk = Attend(q, k, v, mask, options);
  ASSERT_OK(sunk);
  for (int64_t x = 0; x < 4; ++x) EXPECT_EQ(sunk->output.data()[5 * 4 + x], 0.0f);
  EXPECT_NEAR(sunk->lse.data()[5], 0.7f, 1e-6);
  EXPECT_NEAR(sunk->lse.data()[6 + 5], -0.2f, 1e-6);
}

// A NaN value row before a row's window is skipped by the kernel but
// multiplied by a weight of 0 in the reference: NaN, as sdpa.h promises.
TEST(SdpaTerms, NanValueBeforeTheWindowPropagatesAsTheReference) {
  for (const Workload& w : kShapes) {
    SCOPED_TRACE(w.name);
    const Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 31);
    const Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 32);
    Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 33);
    v.data()[1] = NAN;  // key 0, column 1
    MaskSpec mask;
    mask.sliding_window = std::max<int64_t>(1, w.lk / 5);
    auto ref = AttendReference(q, k, v, mask, {});
    auto got = Attend(q, k, v, mask, {});
    ASSERT_OK(ref);
    ASSERT_OK(got);
    for (int64_t x = 0; x < got->output.size(); ++x) {
      EXPECT_EQ(std::isnan(got->output.data()[x]), std::isnan(ref->output.data()[x])) << x;
    }
  }
}

TEST(SdpaTerms, BadTermsAreInvalidArgumentNamingTheField) {
  const Tensor q = RandomTensor({1, 2, 3, 4}, 1), k = RandomTensor({1, 1, 3, 4}, 2);
  const Tensor v = RandomTensor({1, 1, 3, 4}, 3);
  struct Bad {
    MaskSpec mask;
    SdpaOptions options;
    const char* field;
  };
  std::vector<Bad> cases(5);
  cases[0].mask.sliding_window = -1, cases[0].field = "mask.sliding_window";
  cases[1].options.logit_softcap = -1.0f, cases[1].field = "logit_softcap";
  cases[2].options.logit_softcap = NAN, cases[2].field = "logit_softcap";
  cases[3].options.sinks = {0.0f}, cases[3].field = "sinks";
  cases[4].options.sinks = {0.0f, INFINITY}, cases[4].field = "sinks[1]";
  for (const Bad& bad : cases) {
    auto got = Attend(q, k, v, bad.mask, bad.options);
    ASSERT_FALSE(got.ok()) << bad.field;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(got.status().message(), bad.field)) << got.status().message();
  }
}

// Timing.flops of a windowed call counts the pairs the window lets through.
TEST(SdpaTerms, FlopsCountTheWindowsPairs) {
  EXPECT_DOUBLE_EQ(SdpaFlops(1, 1, 4, 4, 8, 8, true, 2), 2.0 * (1 + 2 + 2 + 2) * 16);
  EXPECT_DOUBLE_EQ(SdpaFlops(1, 1, 1, 10, 4, 4, false, 4), 2.0 * 4 * 8);
  for (int64_t lq : {1, 3, 9, 20}) {
    for (int64_t lk : {1, 5, 9, 20}) {
      for (int64_t w : {1, 2, 7, 30}) {
        int64_t pairs = 0;
        MaskSpec mask;
        mask.sliding_window = w;
        for (int64_t i = 0; i < lq; ++i) {
          const int64_t p = i + lk - lq;
          for (int64_t j = 0; j < lk; ++j) pairs += j <= p && j > p - w;
        }
        EXPECT_DOUBLE_EQ(SdpaFlops(2, 3, lq, lk, 5, 6, true, w), 2.0 * 2 * 3 * pairs * 11)
            << lq << " " << lk << " " << w;
      }
    }
  }
}

}  // namespace
}  // namespace attention
