// Layers: state_dict loading, deterministic init, Forward's input checks,
// and MLA's absorbed form against its naive form.
#include "core/module.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/core/test_configs.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

WeightMap RandomWeights(const ModuleConfig& c, uint32_t seed) {
  WeightMap w;
  for (const WeightSpec& s : ExpectedWeights(c)) w.emplace(s.name, RandomTensor(s.shape, seed++));
  return w;
}

absl::Status LoadError(const ModuleConfig& c, WeightMap w) {
  return AttentionModule::Create(c, std::move(w)).status();
}

TEST(ModuleWeights, MissingTensorIsNamedWithItsShape) {
  WeightMap w = RandomWeights(Gqa(32, 8, 2), 1);
  w.erase("W_k.weight");
  const absl::Status s = LoadError(Gqa(32, 8, 2), std::move(w));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "missing tensor 'W_k.weight' (expected shape [8, 32])"))
      << s;
}

TEST(ModuleWeights, UnexpectedTensorIsNamed) {
  WeightMap w = RandomWeights(Mha(16, 2, false), 1);
  w.emplace("W_q.bias", Tensor({16}));
  const absl::Status s = LoadError(Mha(16, 2, false), std::move(w));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "unexpected tensor 'W_q.bias'")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "config.bias = false")) << s;
}

TEST(ModuleWeights, MisShapedTensorGivesExpectedAndActual) {
  WeightMap w = RandomWeights(Mla(32, 4, 24, 16, 8, 4, 6), 1);
  w["kv_b_proj.weight"] = Tensor({56, 15});
  const absl::Status s = LoadError(Mla(32, 4, 24, 16, 8, 4, 6), std::move(w));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      absl::StrContains(s.message(), "weights['kv_b_proj.weight']: expected shape [56, 16], got [56, 15]"))
      << s;
}

TEST(ModuleWeights, LowerCaseAliasesAreAcceptedButNotTwice) {
  const ModuleConfig c = Mha(16, 2);
  WeightMap upper = RandomWeights(c, 7);
  WeightMap lower;
  for (auto& [name, t] : upper) lower.emplace("w" + name.substr(1), t);
  auto a = AttentionModule::Create(c, upper);
  auto b = AttentionModule::Create(c, lower);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ((*b)->weights().count("W_o.weight"), 1u);
  const Tensor x = RandomTensor({2, 3, 16}, 9);
  ForwardInput in;
  in.query = &x;
  auto ya = (*a)->Forward(in);
  auto yb = (*b)->Forward(in);
  ASSERT_OK(ya);
  ASSERT_OK(yb);
  EXPECT_EQ(ya->output.values(), yb->output.values());

  upper.emplace("w_q.weight", upper.at("W_q.weight"));
  const absl::Status s = LoadError(c, std::move(upper));
  EXPECT_TRUE(absl::StrContains(s.message(), "given twice")) << s;
}

TEST(ModuleInit, SameSeedSameWeightsOtherSeedOther) {
  const ModuleConfig c = Mla(32, 4, 24, 16, 8, 4, 6);
  auto a = AttentionModule::CreateRandom(c, 42);
  auto b = AttentionModule::CreateRandom(c, 42);
  auto other = AttentionModule::CreateRandom(c, 43);
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK(other);
  for (const auto& [name, t] : (*a)->weights()) {
    EXPECT_EQ(t.values(), (*b)->weights().at(name).values()) << name;
    if (name.find("layernorm") == std::string::npos) {
      EXPECT_NE(t.values(), (*other)->weights().at(name).values()) << name;
    }
  }
  // nn.Linear's bound: |w| <= 1/sqrt(in_features).
  const WeightMap a_weights = (*a)->weights();
  for (float x : a_weights.at("kv_b_proj.weight").values()) EXPECT_LE(std::abs(x), 0.25f);
  EXPECT_EQ((*a)->weights().at("kv_a_layernorm.weight").values(), std::vector<float>(16, 1.0f));
}

TEST(ModuleForward, AbsentKeyMeansSelfAttention) {
  for (const ModuleConfig& c : {SelfAttn(16, 12, 20), Mha(32, 4), Gqa(32, 8, 2), Mqa(24, 6),
                                Mla(32, 4, 0, 16, 8, 4, 6)}) {
    auto m = AttentionModule::CreateRandom(c, 5);
    ASSERT_OK(m);
    const Tensor x = RandomTensor({2, 5, c.d_model}, 3);
    ForwardInput self, explicit_kv;
    self.query = &x;
    explicit_kv.query = explicit_kv.key = &x;
    if (c.variant != Variant::kMla) explicit_kv.value = &x;
    auto a = (*m)->Forward(self);
    auto b = (*m)->Forward(explicit_kv);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(a->output.shape(), (std::vector<int64_t>{2, 5, OutputDim(c)}));
    EXPECT_EQ(a->output.values(), b->output.values());
  }
}

TEST(ModuleForward, InputShapesAreCheckedByName) {
  auto m = AttentionModule::CreateRandom(Gqa(32, 8, 2), 1);
  ASSERT_OK(m);
  const Tensor good = RandomTensor({2, 5, 32}, 1);
  const Tensor wide = RandomTensor({2, 5, 16}, 1);
  const Tensor other_batch = RandomTensor({3, 5, 32}, 1);
  const Tensor other_len = RandomTensor({2, 6, 32}, 1);
  struct Case {
    const Tensor* q;
    const Tensor* k;
    const Tensor* v;
    std::string prefix;
  };
  for (const Case& c : {Case{&wide, nullptr, nullptr, "query: expected [B, L, d_model = 32]"},
                        Case{&good, &other_batch, nullptr, "key: dim 0 (B) expected 2"},
                        Case{&good, &good, &other_len, "value: expected [B, Lk] = [2, 5]"}}) {
    ForwardInput in;
    in.query = c.q;
    in.key = c.k;
    in.value = c.v;
    auto r = (*m)->Forward(in);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(r.status().message(), c.prefix)) << r.status();
  }
  ForwardInput bad_mask;
  bad_mask.query = &good;
  bad_mask.mask.key_lengths = {5, 6};
  auto r = (*m)->Forward(bad_mask);
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "mask.key_lengths[1]")) << r.status();
}

TEST(ModuleForward, MlaRefusesAValueDifferentFromKey) {
  auto m = AttentionModule::CreateRandom(Mla(32, 4, 0, 16, 8, 4, 6), 1);
  ASSERT_OK(m);
  const Tensor x = RandomTensor({1, 3, 32}, 1), y = RandomTensor({1, 3, 32}, 2);
  ForwardInput in;
  in.query = &x;
  in.key = &x;
  in.value = &y;
  auto r = (*m)->Forward(in);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "value:")) << r.status();
}

struct MlaCase {
  std::string name;
  ModuleConfig config;
  int64_t b, lq, lk;
  bool causal, lengths;
};

void PrintTo(const MlaCase& c, std::ostream* os) { *os << c.name; }

class MlaForms : public testing::TestWithParam<MlaCase> {};

TEST_P(MlaForms, AbsorbedEqualsNaive) {
  const MlaCase& c = GetParam();
  auto m = AttentionModule::CreateRandom(c.config, 17);
  ASSERT_OK(m);
  const Tensor x = RandomTensor({c.b, c.lq, c.config.d_model}, 1);
  const Tensor kv = RandomTensor({c.b, c.lk, c.config.d_model}, 2);
  ForwardInput in;
  in.query = &x;
  if (c.lk != c.lq) in.key = &kv;
  in.mask.causal = c.causal;
  if (c.lengths) {
    for (int64_t i = 0; i < c.b; ++i) in.mask.key_lengths.push_back(1 + (i * 7) % c.lk);
  }
  in.return_weights = true;
  in.mla_form = MlaForm::kNaive;
  auto naive = (*m)->Forward(in);
  in.mla_form = MlaForm::kAbsorbed;
  auto absorbed = (*m)->Forward(in);
  ASSERT_OK(naive);
  ASSERT_OK(absorbed);
  EXPECT_LT(RelError(absorbed->output, naive->output), 1e-4);
  EXPECT_LT(RelError(absorbed->weights, naive->weights), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, MlaForms,
    testing::Values(MlaCase{"SmallQLoraCausal", Mla(64, 4, 48, 32, 16, 8, 16), 2, 9, 9, true, false},
                    MlaCase{"NoQLoraLengths", Mla(48, 3, 0, 20, 10, 6, 12), 3, 7, 7, false, true},
                    MlaCase{"DecodeOneQuery", Mla(64, 8, 32, 64, 16, 8, 24), 2, 1, 40, true, false},
                    MlaCase{"DeepSeekHeadDims", Mla(256, 2, 96, 512, 128, 64, 128), 1, 5, 33,
                            true, true}),
    [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace attention
