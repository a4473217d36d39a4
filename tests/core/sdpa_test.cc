// Property tests: the oneDNN kernel against the plain double-precision
// reference over a sweep of shapes, masks and memory layouts.
#include "core/sdpa.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/internal/kernels.h"
#include "core/internal/sdpa_plan.h"
#include "core/workload.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

enum class MaskKind { kNone, kCausal, kKeyLengths, kKeepLqLk, kKeepB11Lk, kKeepFull, kAll };

std::string MaskName(MaskKind k);
void PrintTo(MaskKind k, std::ostream* os) { *os << MaskName(k); }

std::string MaskName(MaskKind k) {
  switch (k) {
    case MaskKind::kNone:
      return "NoMask";
    case MaskKind::kCausal:
      return "Causal";
    case MaskKind::kKeyLengths:
      return "KeyLengths";
    case MaskKind::kKeepLqLk:
      return "KeepLqLk";
    case MaskKind::kKeepB11Lk:
      return "KeepB11Lk";
    case MaskKind::kKeepFull:
      return "KeepFull";
    case MaskKind::kAll:
      return "CausalLengthsKeep";
  }
  return "";
}

// Random keep bytes (~70% kept); the first row of every [.., Lq, Lk] slice
// fully masked when `mask_first_row`.
std::vector<uint8_t> RandomKeep(const std::vector<int64_t>& shape, uint32_t seed,
                                bool mask_first_row) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> keep(NumElements(shape));
  for (auto& k : keep) k = gen() % 10 < 7;
  if (mask_first_row && shape.size() >= 2) {
    const int64_t lk = shape.back(), lq = shape[shape.size() - 2];
    for (size_t base = 0; base < keep.size(); base += lq * lk) {
      std::fill(keep.begin() + base, keep.begin() + base + lk, 0);
    }
  }
  return keep;
}

MaskSpec MakeMask(MaskKind kind, const Workload& w, uint32_t seed) {
  MaskSpec m;
  std::mt19937 gen(seed);
  switch (kind) {
    case MaskKind::kNone:
      break;
    case MaskKind::kCausal:
      m.causal = true;
      break;
    case MaskKind::kKeyLengths:
      for (int64_t b = 0; b < w.b; ++b) m.key_lengths.push_back(1 + gen() % w.lk);
      break;
    case MaskKind::kKeepLqLk:
      m.keep_shape = {w.lq, w.lk};
      m.keep = RandomKeep(m.keep_shape, seed, true);
      break;
    case MaskKind::kKeepB11Lk:
      m.keep_shape = {w.b, 1, 1, w.lk};
      m.keep = RandomKeep(m.keep_shape, seed, false);
      break;
    case MaskKind::kKeepFull:
      m.keep_shape = {w.b, w.hq, w.lq, w.lk};
      m.keep = RandomKeep(m.keep_shape, seed, false);
      break;
    case MaskKind::kAll:
      m.causal = true;
      for (int64_t b = 0; b < w.b; ++b) m.key_lengths.push_back(1 + gen() % w.lk);
      m.keep_shape = {w.hq, 1, w.lk};
      m.keep = RandomKeep(m.keep_shape, seed, false);
      break;
  }
  return m;
}

// [B, H, L, D] copied into [B, L, H, D] storage, and the view that reads it
// back as [B, H, L, D].
struct Strided {
  std::vector<float> storage;
  View4 view;
};

Strided ToBlhd(const Tensor& t) {
  const int64_t b = t.dim(0), h = t.dim(1), l = t.dim(2), d = t.dim(3);
  Strided s;
  s.storage.resize(t.size());
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < h; ++j)
      for (int64_t k = 0; k < l; ++k)
        for (int64_t x = 0; x < d; ++x)
          s.storage[((i * l + k) * h + j) * d + x] = t.data()[((i * h + j) * l + k) * d + x];
  s.view.data = s.storage.data();
  s.view.dims[0] = b, s.view.dims[1] = h, s.view.dims[2] = l, s.view.dims[3] = d;
  s.view.strides[0] = l * h * d, s.view.strides[1] = d, s.view.strides[2] = h * d;
  return s;
}

const Workload kShapes[] = {
    {"MhaSmall", 2, 4, 4, 7, 9, 16, 16},
    {"GqaDkNeDv", 2, 6, 2, 5, 11, 8, 12},
    {"MqaOddDims", 2, 8, 1, 3, 17, 13, 7},
    {"DecodeLq1", 3, 8, 2, 1, 33, 64, 64},
    {"SingleKeyLk1", 2, 4, 2, 5, 1, 8, 8},
    {"AllOnes", 1, 1, 1, 1, 1, 1, 1},
    {"ManyQueryTiles", 1, 2, 1, 300, 257, 24, 40},
    {"LongDecode", 2, 4, 4, 1, 1000, 32, 32},
    {"MoreQueriesThanKeys", 2, 2, 1, 9, 4, 8, 8},
    {"FlashKeyTiles", 1, 2, 1, 24, 9000, 8, 12},
    {"WideKeysFlash", 1, 4, 1, 2, 3000, 300, 256},  // key tiles sized by Dk (320)
    {"FlashWithFewRowsTail", 1, 1, 1, 33, 9000, 8,
     8},  // query tiles 9, 9, 9, 6: the last is few-rows
    // Decode rows past kFewRows: groups of four over each key block.
    {"MqaDecode32Heads", 2, 32, 1, 1, 1300, 24, 40},
    {"MlaLikeDraftTokens", 1, 16, 1, 2, 700, 72, 64},
};

// Runs a test body with the given kernel ISA, restoring the one in use.
class KernelIsa {
 public:
  explicit KernelIsa(const std::string& isa)
      : previous_(internal::Kernels().isa), ok_(internal::SelectKernels(isa.c_str())) {}
  ~KernelIsa() { internal::SelectKernels(previous_.c_str()); }
  bool ok() const { return ok_; }

 private:
  std::string previous_;
  bool ok_;
};

class SdpaSweep : public testing::TestWithParam<std::tuple<Workload, MaskKind, bool, std::string>> {
};

TEST_P(SdpaSweep, MatchesDoublePrecisionReference) {
  const auto& [w, mask_kind, strided, isa] = GetParam();
  const KernelIsa kernels(isa);
  if (!kernels.ok()) GTEST_SKIP() << "this CPU lacks " << isa;
  const Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 1);
  const Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 2);
  const Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 3);
  const MaskSpec mask = MakeMask(mask_kind, w, 4);

  auto ref = AttendReference(q, k, v, mask, {0.0f, true});
  ASSERT_OK(ref);

  Tensor out({w.b, w.hq, w.lq, w.dv});
  Tensor weights({w.b, w.hq, w.lq, w.lk});
  if (strided) {
    // Heads read from [B, L, H, D] buffers and written to one.
    const Strided qs = ToBlhd(q), ks = ToBlhd(k), vs = ToBlhd(v);
    std::vector<float> out_blhd(out.size());
    MutView4 ov;
    ov.data = out_blhd.data();
    ov.dims[0] = w.b, ov.dims[1] = w.hq, ov.dims[2] = w.lq, ov.dims[3] = w.dv;
    ov.strides[0] = w.lq * w.hq * w.dv, ov.strides[1] = w.dv, ov.strides[2] = w.hq * w.dv;
    ASSERT_OK(Sdpa(qs.view, ks.view, vs.view, mask, 0.0f, ov, weights.data()));
    auto unstride = [&](Tensor& dense) {
      for (int64_t i = 0; i < w.b; ++i)
        for (int64_t h = 0; h < w.hq; ++h)
          for (int64_t l = 0; l < w.lq; ++l)
            for (int64_t d = 0; d < w.dv; ++d)
              dense.data()[((i * w.hq + h) * w.lq + l) * w.dv + d] = *(ov.Row(i, h, l) + d);
    };
    unstride(out);
    // Without weights (query rows of a group packed into one GEMM).
    Tensor out_no_weights({w.b, w.hq, w.lq, w.dv});
    ASSERT_OK(Sdpa(qs.view, ks.view, vs.view, mask, 0.0f, ov, nullptr));
    unstride(out_no_weights);
    EXPECT_LT(RelError(out_no_weights, ref->output), w.Tolerance());
  } else {
    ASSERT_OK(Sdpa(View4::Of(q), View4::Of(k), View4::Of(v), mask, 0.0f, MutView4::Of(out),
                   weights.data()));
  }
  EXPECT_LT(RelError(out, ref->output), w.Tolerance());
  EXPECT_LT(RelError(weights, ref->weights), w.Tolerance());

  // Without weights the kernel takes its scratch path: same output.
  auto no_weights = Attend(q, k, v, mask, {0.0f, false});
  ASSERT_OK(no_weights);
  EXPECT_TRUE(no_weights->weights.empty());
  EXPECT_LT(RelError(no_weights->output, ref->output), w.Tolerance());
}

INSTANTIATE_TEST_SUITE_P(Shapes, SdpaSweep,
                         testing::Combine(testing::ValuesIn(kShapes),
                                          testing::Values(MaskKind::kNone, MaskKind::kCausal,
                                                          MaskKind::kKeyLengths,
                                                          MaskKind::kKeepLqLk, MaskKind::kKeepB11Lk,
                                                          MaskKind::kKeepFull, MaskKind::kAll),
                                          testing::Bool(), testing::Values("avx2", "avx512")),
                         [](const auto& p) {
                           return std::get<0>(p.param).name + "_" + MaskName(std::get<1>(p.param)) +
                                  (std::get<2>(p.param) ? "_Strided_" : "_Dense_") +
                                  std::get<3>(p.param);
                         });

// Narrow heads (Dk, Dv of 1..5) over a long Lk that crosses key tiles, from
// one query row to several query tiles: valid input always computes (a
// [K, 1] value operand was once refused by sgemm as INTERNAL).
class SdpaNarrowDims
    : public testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t, int64_t, bool>> {};

TEST_P(SdpaNarrowDims, MatchesReference) {
  const auto& [dk, dv, lq, group, causal] = GetParam();
  Workload w{"narrow", 1, group, 1, lq, 4097, dk, dv, causal};
  const Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 1);
  const Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 2);
  const Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 3);
  MaskSpec mask;
  mask.causal = causal;
  auto ref = AttendReference(q, k, v, mask, {0.0f, true});
  ASSERT_OK(ref);
  for (bool weights : {false, true}) {
    SCOPED_TRACE(weights ? "with weights" : "without weights");
    auto r = Attend(q, k, v, mask, {0.0f, weights});
    ASSERT_OK(r);
    EXPECT_LT(RelError(r->output, ref->output), w.Tolerance());
    if (weights) {
      EXPECT_LT(RelError(r->weights, ref->weights), w.Tolerance());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, SdpaNarrowDims,
                         testing::Combine(testing::Values(1, 2, 3, 5), testing::Values(1, 2, 3, 5),
                                          testing::Values(1, 4, 32, 33), testing::Values(1, 2),
                                          testing::Bool()),
                         [](const auto& p) {
                           return absl::StrCat("Dk", std::get<0>(p.param), "Dv",
                                               std::get<1>(p.param), "Lq", std::get<2>(p.param),
                                               "G", std::get<3>(p.param),
                                               std::get<4>(p.param) ? "Causal" : "");
                         });

// Non-finite inputs propagate as the reference does (core/sdpa.h), on every
// path the planner picks: the same elements are NaN as in the double
// reference, the others match it. The kernels once clamped exp(NaN) to
// exp(88): a NaN query row gave the mean of the values, a +Inf key weight 1.
enum class Poison { kQueryNan, kKeyInf, kVisibleValueNan, kHiddenValueNan };

std::string PoisonName(Poison p) {
  switch (p) {
    case Poison::kQueryNan:
      return "QueryNan";
    case Poison::kKeyInf:
      return "KeyInf";
    case Poison::kVisibleValueNan:
      return "VisibleValueNan";
    case Poison::kHiddenValueNan:
      return "HiddenValueNan";
  }
  return "";
}

struct PathCase {
  internal::SdpaPath path;
  Workload w;
  bool weights;
};

void PrintTo(const PathCase& c, std::ostream* os) { *os << internal::SdpaPathName(c.path); }

// One case per path the planner picks, and every poison (the float32 and
// bf16 non-finite tests).
const PathCase kPathCases[] = {
    {internal::SdpaPath::kFewRows, {"d", 1, 4, 2, 1, 600, 16, 8}, false},
    {internal::SdpaPath::kFewRows, {"d", 1, 4, 2, 1, 600, 16, 8}, true},
    {internal::SdpaPath::kWholeRows, {"w", 1, 2, 1, 64, 300, 16, 8}, false},
    {internal::SdpaPath::kFlash, {"f", 1, 2, 1, 64, 3000, 16, 8}, false},
    {internal::SdpaPath::kWeights, {"s", 1, 2, 1, 64, 300, 16, 8}, true}};
const Poison kPoisons[] = {Poison::kQueryNan, Poison::kKeyInf, Poison::kVisibleValueNan,
                           Poison::kHiddenValueNan};

void PoisonInputs(Poison poison, const Workload& w, Tensor& q, Tensor& k, Tensor& v) {
  switch (poison) {
    case Poison::kQueryNan:  // the last query row of the last head
      q.data()[q.size() - w.dk + 1] = NAN;
      break;
    case Poison::kKeyInf:  // key 5 of kv head 0: +Inf or -Inf scores by the sign of q
      k.data()[5 * w.dk] = INFINITY;
      break;
    case Poison::kVisibleValueNan:  // key 2, seen by every causal row
      v.data()[2 * w.dv] = NAN;
      break;
    case Poison::kHiddenValueNan:  // the last key, causally hidden from all rows but the last
      v.data()[(w.lk - 1) * w.dv] = NAN;
      break;
  }
}

// Elements NaN in exactly the same places, the others within tolerance.
void ExpectSameNansAndClose(const Tensor& got, const Tensor& want, double tolerance,
                            const char* what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  int64_t nans = 0, mismatched = 0;
  double diff = 0, ref = 1e-30;
  for (int64_t i = 0; i < got.size(); ++i) {
    const float a = got.data()[i], b = want.data()[i];
    if (std::isnan(b)) ++nans;
    if (std::isnan(a) != std::isnan(b)) {
      ++mismatched;
      continue;
    }
    if (std::isnan(b)) continue;
    diff = std::max(diff, std::abs(static_cast<double>(a) - b));
    ref = std::max(ref, std::abs(static_cast<double>(b)));
  }
  EXPECT_EQ(mismatched, 0) << what << ": elements NaN in one and not the other (" << nans
                           << " NaN in the reference)";
  EXPECT_LT(diff / ref, tolerance) << what;
}

class SdpaNonFinite
    : public testing::TestWithParam<std::tuple<PathCase, Poison, MaskKind, std::string>> {};

TEST_P(SdpaNonFinite, PropagatesAsTheReference) {
  const auto& [c, poison, mask_kind, isa] = GetParam();
  const KernelIsa kernels(isa);
  if (!kernels.ok()) GTEST_SKIP() << "this CPU lacks " << isa;
  const Workload& w = c.w;
  internal::SdpaProblem problem;
  problem.batch = w.b, problem.hq = w.hq, problem.hkv = w.hkv, problem.lq = w.lq;
  problem.lk = w.lk, problem.dk = w.dk, problem.dv = w.dv, problem.weights = c.weights;
  problem.threads = omp_get_max_threads();
  ASSERT_EQ(internal::PlanSdpa(problem).path, c.path);

  Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 1);
  Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 2);
  Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 3);
  const MaskSpec mask = MakeMask(mask_kind, w, 4);
  PoisonInputs(poison, w, q, k, v);
  auto ref = AttendReference(q, k, v, mask, {0.0f, true});
  ASSERT_OK(ref);
  int64_t ref_nans = 0;
  for (float x : ref->output.values()) ref_nans += std::isnan(x);
  // Every poison reaches some output, but a query or key one in a fully
  // masked row (the keep mask's first row, all of a decode row) is hidden.
  const bool hidden = mask_kind == MaskKind::kKeepLqLk && w.lq == 1 &&
                      (poison == Poison::kQueryNan || poison == Poison::kKeyInf);
  EXPECT_EQ(ref_nans > 0, !hidden);

  auto r = Attend(q, k, v, mask, {0.0f, c.weights});
  ASSERT_OK(r);
  ExpectSameNansAndClose(r->output, ref->output, w.Tolerance(), "output");
  if (c.weights) ExpectSameNansAndClose(r->weights, ref->weights, w.Tolerance(), "weights");
}

INSTANTIATE_TEST_SUITE_P(
    Paths, SdpaNonFinite,
    testing::Combine(testing::ValuesIn(kPathCases), testing::ValuesIn(kPoisons),
                     testing::Values(MaskKind::kNone, MaskKind::kCausal, MaskKind::kKeepLqLk),
                     testing::Values("avx2", "avx512")),
    [](const auto& p) {
      const PathCase& c = std::get<0>(p.param);
      return std::string(internal::SdpaPathName(c.path)) + (c.weights ? "Weights_" : "_") +
             PoisonName(std::get<1>(p.param)) + "_" + MaskName(std::get<2>(p.param)) + "_" +
             std::get<3>(p.param);
    });

TEST(Sdpa, NanQueryInAFullyMaskedRowIsHidden) {
  // masked_fill replaces the row's NaN scores: it averages all values.
  Tensor q = RandomTensor({1, 1, 2, 4}, 1);
  const Tensor k = RandomTensor({1, 1, 3, 4}, 2);
  const Tensor v = RandomTensor({1, 1, 3, 5}, 3);
  q.data()[1] = NAN;  // row 0, fully masked below
  MaskSpec mask;
  mask.keep_shape = {2, 3};
  mask.keep = {0, 0, 0, 1, 1, 1};
  auto r = Attend(q, k, v, mask, {0.0f, true});
  ASSERT_OK(r);
  for (int64_t d = 0; d < 5; ++d) {
    const float mean = (v.data()[d] + v.data()[5 + d] + v.data()[10 + d]) / 3.0f;
    EXPECT_NEAR(r->output.data()[d], mean, 1e-6);
  }
}

TEST(Sdpa, GqaMatchesRepeatInterleavedMha) {
  // Expanding K/V with repeat_interleave and running MHA gives the same result.
  const int64_t b = 2, hq = 6, hkv = 3, lq = 4, lk = 10, d = 8, group = hq / hkv;
  const Tensor q = RandomTensor({b, hq, lq, d}, 11);
  const Tensor k = RandomTensor({b, hkv, lk, d}, 12);
  const Tensor v = RandomTensor({b, hkv, lk, d}, 13);
  Tensor k_rep({b, hq, lk, d}), v_rep({b, hq, lk, d});
  for (int64_t i = 0; i < b; ++i)
    for (int64_t h = 0; h < hq; ++h)
      for (int64_t x = 0; x < lk * d; ++x) {
        k_rep.data()[(i * hq + h) * lk * d + x] = k.data()[(i * hkv + h / group) * lk * d + x];
        v_rep.data()[(i * hq + h) * lk * d + x] = v.data()[(i * hkv + h / group) * lk * d + x];
      }
  auto gqa = Attend(q, k, v, {}, {});
  auto mha = Attend(q, k_rep, v_rep, {}, {});
  ASSERT_OK(gqa);
  ASSERT_OK(mha);
  EXPECT_LT(RelError(gqa->output, mha->output), 1e-6);
}

TEST(Sdpa, FullyMaskedRowAveragesAllValues) {
  const Tensor q = RandomTensor({1, 1, 2, 4}, 1);
  const Tensor k = RandomTensor({1, 1, 3, 4}, 2);
  const Tensor v = RandomTensor({1, 1, 3, 5}, 3);
  MaskSpec mask;
  mask.keep_shape = {2, 3};
  mask.keep = {0, 0, 0, 1, 0, 1};
  auto r = Attend(q, k, v, mask, {0.0f, true});
  ASSERT_OK(r);
  for (int64_t d = 0; d < 5; ++d) {
    const float mean = (v.data()[d] + v.data()[5 + d] + v.data()[10 + d]) / 3.0f;
    EXPECT_NEAR(r->output.data()[d], mean, 1e-6);
  }
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(r->weights.data()[j], 1.0f / 3.0f, 1e-7);
  EXPECT_EQ(r->weights.data()[3 + 1], 0.0f);  // masked in a row that sees keys: exactly 0
}

TEST(Sdpa, ExplicitScaleIsUsed) {
  const Tensor q = RandomTensor({1, 2, 3, 8}, 1);
  const Tensor k = RandomTensor({1, 2, 5, 8}, 2);
  const Tensor v = RandomTensor({1, 2, 5, 8}, 3);
  Tensor q_scaled = q;
  for (float& x : q_scaled.values()) x *= 0.25f * std::sqrt(8.0f);
  auto a = Attend(q, k, v, {}, {0.25f, false});
  auto b = Attend(q_scaled, k, v, {}, {0.0f, false});
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_LT(RelError(a->output, b->output), 1e-5);
}

TEST(Sdpa, CausalIsBottomRightAligned) {
  // Lq = 2, Lk = 4: query 0 sees keys 0..2, query 1 sees 0..3.
  const Tensor q = RandomTensor({1, 1, 2, 4}, 1);
  const Tensor k = RandomTensor({1, 1, 4, 4}, 2);
  const Tensor v = RandomTensor({1, 1, 4, 4}, 3);
  MaskSpec mask;
  mask.causal = true;
  auto r = Attend(q, k, v, mask, {0.0f, true});
  ASSERT_OK(r);
  const float* w = r->weights.data();
  EXPECT_GT(w[2], 0.0f);
  EXPECT_EQ(w[3], 0.0f);
  EXPECT_GT(w[4 + 3], 0.0f);
}

struct BadInput {
  std::string name;
  std::vector<int64_t> q, k, v;
  MaskSpec mask;
  std::string field;   // the message names it
  std::string detail;  // and says what was expected / what came
};

void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

class SdpaBadInput : public testing::TestWithParam<BadInput> {};

TEST_P(SdpaBadInput, IsInvalidArgumentNamingTheField) {
  const BadInput& c = GetParam();
  auto r = Attend(Tensor(c.q), Tensor(c.k), Tensor(c.v), c.mask, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(r.status().message(), c.field)) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), c.detail)) << r.status();
}

MaskSpec Lengths(std::vector<int64_t> l) {
  MaskSpec m;
  m.key_lengths = std::move(l);
  return m;
}
MaskSpec Keep(std::vector<int64_t> shape, int64_t n) {
  MaskSpec m;
  m.keep_shape = std::move(shape);
  m.keep.assign(n, 1);
  return m;
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(
    Table, SdpaBadInput,
    testing::Values(
        BadInput{"QueryRank3", {2, 4, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, {}, "query", "rank 4"},
        BadInput{"ZeroLq", {2, 4, 0, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, {}, "query", ">= 1"},
        BadInput{"KeyBatch", {2, 4, 3, 8}, {3, 4, 5, 8}, {2, 4, 5, 8}, {}, "key", "expected 2, got 3"},
        BadInput{"KeyDk", {2, 4, 3, 8}, {2, 4, 5, 7}, {2, 4, 5, 8}, {}, "key", "expected 8, got 7"},
        BadInput{"HkvNotDividing", {2, 6, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, {}, "key", "Hkv = 4"},
        BadInput{"ValueHeads", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 2, 5, 8}, {}, "value", "expected 4, got 2"},
        BadInput{"ValueLk", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 6, 8}, {}, "value", "expected 5, got 6"},
        BadInput{"KeyLengthsCount", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, Lengths({5}),
                 "mask.key_lengths", "expected 2 entries"},
        BadInput{"KeyLengthZero", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, Lengths({5, 0}),
                 "mask.key_lengths[1]", "expected 1..5"},
        BadInput{"KeyLengthTooLong", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, Lengths({6, 1}),
                 "mask.key_lengths[0]", "got 6"},
        BadInput{"KeepNotBroadcastable", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8},
                 Keep({3, 4}, 12), "mask.keep", "must be 1 or 5"},
        BadInput{"KeepRank5", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, Keep({1, 2, 4, 3, 5}, 120),
                 "mask.keep", "rank <= 4"},
        BadInput{"KeepShortData", {2, 4, 3, 8}, {2, 4, 5, 8}, {2, 4, 5, 8}, Keep({3, 5}, 14),
                 "mask.keep", "needs 15 elements, got 14"}),
    [](const auto& p) { return p.param.name; });
// clang-format on

// bf16 compute on every path and mask kind. Q·Kᵀ of bf16 operands is exact
// products summed in float32, so the weights match the reference computed on
// the rounded operands to float32 rounding; the output differs from it only
// by the rounding of P to bf16 before P·V (2^-9 relative per probability).
constexpr double kBf16Bound = 1e-2;          // the precision contract
constexpr double kBf16RoundedPBound = 5e-3;  // P's rounding alone

SdpaOptions Bf16Options(bool weights) {
  SdpaOptions options{0.0f, weights};
  options.compute_dtype = DType::kBfloat16;
  return options;
}

std::vector<uint16_t> ToBf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  FloatToBfloat16(x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

class SdpaBf16Sweep : public testing::TestWithParam<std::tuple<Workload, MaskKind>> {};

TEST_P(SdpaBf16Sweep, IsWithinTheBf16BoundsOfTheReference) {
  const auto& [w, mask_kind] = GetParam();
  const Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 1);
  const Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 2);
  const Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 3);
  const MaskSpec mask = MakeMask(mask_kind, w, 4);
  auto ref = AttendReference(q, k, v, mask, {0.0f, true});
  ASSERT_OK(ref);
  auto rounded = AttendReference(q, k, v, mask, Bf16Options(true));
  ASSERT_OK(rounded);
  for (bool weights : {true, false}) {
    SCOPED_TRACE(weights ? "with weights" : "without weights");
    auto got = Attend(q, k, v, mask, Bf16Options(weights));
    ASSERT_OK(got);
    // Random operands over thousands of keys average to small outputs: there
    // the operands' rounding alone may pass the contract's bound (which the
    // golden cases hold), and the result is no further than it, plus P's.
    EXPECT_LT(RelError(got->output, ref->output),
              std::max(kBf16Bound, RelError(rounded->output, ref->output)) + kBf16RoundedPBound);
    EXPECT_LT(RelError(got->output, rounded->output), kBf16RoundedPBound);
    if (weights) {
      EXPECT_LT(RelError(got->weights, rounded->weights), w.Tolerance());
    }
  }
  // Operands held in bf16 and strided ([B, L, H, D] storage): the same
  // bounds through SdpaBf16.
  const Strided qs = ToBlhd(q), ks = ToBlhd(k), vs = ToBlhd(v);
  const std::vector<uint16_t> q16 = ToBf16(qs.storage), k16 = ToBf16(ks.storage),
                              v16 = ToBf16(vs.storage);
  auto bf16_view = [](const Strided& s, const std::vector<uint16_t>& data) {
    Bf16View4 view;
    view.data = data.data();
    std::copy_n(s.view.dims, 4, view.dims);
    std::copy_n(s.view.strides, 3, view.strides);
    return view;
  };
  Tensor out({w.b, w.hq, w.lq, w.dv}), weights({w.b, w.hq, w.lq, w.lk});
  ASSERT_OK(SdpaBf16(bf16_view(qs, q16), bf16_view(ks, k16), bf16_view(vs, v16), mask, 0.0f,
                     MutView4::Of(out), weights.data()));
  EXPECT_LT(RelError(out, rounded->output), kBf16RoundedPBound);
  EXPECT_LT(RelError(weights, rounded->weights), w.Tolerance());
  ASSERT_OK(SdpaBf16(bf16_view(qs, q16), bf16_view(ks, k16), bf16_view(vs, v16), mask, 0.0f,
                     MutView4::Of(out), nullptr));
  EXPECT_LT(RelError(out, rounded->output), kBf16RoundedPBound);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SdpaBf16Sweep,
    testing::Combine(testing::ValuesIn(kShapes),
                     testing::Values(MaskKind::kNone, MaskKind::kCausal, MaskKind::kKeyLengths,
                                     MaskKind::kKeepLqLk, MaskKind::kKeepFull, MaskKind::kAll)),
    [](const auto& p) { return std::get<0>(p.param).name + "_" + MaskName(std::get<1>(p.param)); });

// Non-finite inputs propagate in bf16 compute as in the reference on the
// rounded operands (bf16 keeps NaN and ±Inf), on every path.
class SdpaBf16NonFinite : public testing::TestWithParam<std::tuple<PathCase, Poison, MaskKind>> {};

TEST_P(SdpaBf16NonFinite, PropagatesAsTheReference) {
  const auto& [c, poison, mask_kind] = GetParam();
  const Workload& w = c.w;
  Tensor q = RandomTensor({w.b, w.hq, w.lq, w.dk}, 1);
  Tensor k = RandomTensor({w.b, w.hkv, w.lk, w.dk}, 2);
  Tensor v = RandomTensor({w.b, w.hkv, w.lk, w.dv}, 3);
  const MaskSpec mask = MakeMask(mask_kind, w, 4);
  PoisonInputs(poison, w, q, k, v);
  auto ref = AttendReference(q, k, v, mask, Bf16Options(true));
  ASSERT_OK(ref);
  auto r = Attend(q, k, v, mask, Bf16Options(c.weights));
  ASSERT_OK(r);
  ExpectSameNansAndClose(r->output, ref->output, kBf16RoundedPBound, "output");
  if (c.weights) {
    ExpectSameNansAndClose(r->weights, ref->weights, w.Tolerance(), "weights");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, SdpaBf16NonFinite,
    testing::Combine(testing::ValuesIn(kPathCases), testing::ValuesIn(kPoisons),
                     testing::Values(MaskKind::kNone, MaskKind::kCausal, MaskKind::kKeepLqLk)),
    [](const auto& p) {
      const PathCase& c = std::get<0>(p.param);
      return std::string(internal::SdpaPathName(c.path)) + (c.weights ? "Weights_" : "_") +
             PoisonName(std::get<1>(p.param)) + "_" + MaskName(std::get<2>(p.param));
    });

// A causal forward's rows in bf16 compute (GEMM paths: P rounded against
// each row's maximum) equal the same rows computed one at a time over their
// visible keys (the few-rows loops of decode) to float32 summation order.
TEST(SdpaBf16, DecodeRowsEqualTheCausalForwardsRows) {
  const int64_t l = 150, d = 32;
  const Tensor q = RandomTensor({1, 1, l, d}, 1), k = RandomTensor({1, 1, l, d}, 2),
               v = RandomTensor({1, 1, l, d}, 3);
  MaskSpec causal;
  causal.causal = true;
  Tensor full({1, 1, l, d}), row({1, 1, 1, d});
  ASSERT_OK(Sdpa(View4::Of(q), View4::Of(k), View4::Of(v), causal, 0.0f, MutView4::Of(full),
                 nullptr, DType::kBfloat16));
  double worst = 0;
  for (int64_t i = 0; i < l; ++i) {
    ASSERT_OK(Sdpa(View4::Dense(q.data() + i * d, 1, 1, 1, d),
                   View4::Dense(k.data(), 1, 1, i + 1, d), View4::Dense(v.data(), 1, 1, i + 1, d),
                   MaskSpec(), 0.0f, MutView4::Of(row), nullptr, DType::kBfloat16));
    worst = std::max(worst, RelError(row.data(), full.data() + i * d, d));
  }
  EXPECT_LT(worst, 1e-5);
}

TEST(Sdpa, FlopsCountCausalAsVisiblePairs) {
  EXPECT_DOUBLE_EQ(SdpaFlops(1, 1, 4, 4, 8, 8, false), 2.0 * 16 * 16);
  EXPECT_DOUBLE_EQ(SdpaFlops(1, 1, 4, 4, 8, 8, true), 2.0 * 10 * 16);  // 1+2+3+4 pairs
  EXPECT_DOUBLE_EQ(SdpaFlops(2, 3, 1, 10, 4, 2, true), 2.0 * 2 * 3 * 10 * 6);
}

TEST(Sdpa, VariantNamesFollowHeadSharing) {
  EXPECT_STREQ(VariantName(8, 8), "mha");
  EXPECT_STREQ(VariantName(8, 2), "gqa");
  EXPECT_STREQ(VariantName(8, 1), "mqa");
}

}  // namespace
}  // namespace attention
