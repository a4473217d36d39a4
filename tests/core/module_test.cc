// Layers: config validation, state_dict loading, deterministic init, sizes,
// and MLA's absorbed form against its naive form.
#include "core/module.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

ModuleConfig Mha(int64_t d, int64_t h, bool bias = true) {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = d;
  c.num_heads = h;
  c.bias = bias;
  return c;
}
ModuleConfig Gqa(int64_t d, int64_t hq, int64_t hkv) {
  ModuleConfig c = Mha(d, hq);
  c.variant = Variant::kGqa;
  c.num_kv_heads = hkv;
  return c;
}
ModuleConfig Mqa(int64_t d, int64_t h) {
  ModuleConfig c = Mha(d, h);
  c.variant = Variant::kMqa;
  return c;
}
ModuleConfig SelfAttn(int64_t d, int64_t dk, int64_t dv) {
  ModuleConfig c;
  c.variant = Variant::kSelfAttention;
  c.d_model = d;
  c.d_k = dk;
  c.d_v = dv;
  return c;
}
ModuleConfig Mla(int64_t d, int64_t h, int64_t qr, int64_t r, int64_t dn, int64_t dr, int64_t dv) {
  ModuleConfig c;
  c.variant = Variant::kMla;
  c.d_model = d;
  c.num_heads = h;
  c.q_lora_rank = qr;
  c.kv_lora_rank = r;
  c.qk_nope_head_dim = dn;
  c.qk_rope_head_dim = dr;
  c.v_head_dim = dv;
  return c;
}

TEST(ModuleSizes, KvCacheBytesPerTokenFollowTheVariant) {
  // MHA 2·H·d, GQA 2·G·d, MQA 2·d, MLA (kv_lora_rank + rope_dim), × 4 bytes.
  EXPECT_EQ(KvCacheBytesPerToken(Mha(4096, 32)), 2 * 32 * 128 * 4);
  EXPECT_EQ(KvCacheBytesPerToken(Gqa(4096, 32, 8)), 2 * 8 * 128 * 4);
  EXPECT_EQ(KvCacheBytesPerToken(Mqa(4096, 32)), 2 * 128 * 4);
  EXPECT_EQ(KvCacheBytesPerToken(Mla(5120, 128, 1536, 512, 128, 64, 128)), (512 + 64) * 4);
  EXPECT_EQ(KvCacheBytesPerToken(SelfAttn(64, 16, 24)), (16 + 24) * 4);
}

TEST(ModuleSizes, ParameterCountsMatchHandCounts) {
  const int64_t d = 4096, dh = 128;
  EXPECT_EQ(ParameterCount(Mha(d, 32)), 4 * (d * d + d));
  EXPECT_EQ(ParameterCount(Mha(d, 32, false)), 4 * d * d);
  EXPECT_EQ(ParameterCount(Gqa(d, 32, 8)), 2 * (d * d + d) + 2 * (d * 8 * dh + 8 * dh));
  EXPECT_EQ(ParameterCount(Mqa(d, 32)), 2 * (d * d + d) + 2 * (d * dh + dh));
  EXPECT_EQ(ParameterCount(SelfAttn(64, 16, 24)), 2 * (64 * 16 + 16) + 64 * 24 + 24);
  // DeepSeek-V2 attention: q_a 5120·1536, q_norm 1536, q_b 1536·128·192,
  // kv_a 5120·576, kv_norm 512, kv_b 512·128·256, o 128·128·5120.
  EXPECT_EQ(ParameterCount(Mla(5120, 128, 1536, 512, 128, 64, 128)),
            5120 * 1536 + 1536 + 1536 * 128 * 192 + 5120 * 576 + 512 + 512 * 128 * 256 +
                int64_t{128} * 128 * 5120);
  EXPECT_EQ(ParameterCount(Mla(64, 4, 0, 16, 8, 4, 6)),
            64 * 4 * 12 + 64 * 20 + 16 + 16 * 4 * 14 + 4 * 6 * 64);
}

struct BadConfig {
  std::string name;
  ModuleConfig config;
  std::string field;
  std::string detail;
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class ModuleBadConfig : public testing::TestWithParam<BadConfig> {};

TEST_P(ModuleBadConfig, IsInvalidArgumentNamingTheField) {
  const BadConfig& c = GetParam();
  auto m = AttentionModule::CreateRandom(c.config, 1);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(m.status().message(), c.field)) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), c.detail)) << m.status();
}

ModuleConfig With(ModuleConfig c, void (*edit)(ModuleConfig&)) {
  edit(c);
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ModuleBadConfig,
    testing::Values(
        BadConfig{"ZeroDModel", Mha(0, 1), "config.d_model", "got 0"},
        BadConfig{"HeadsNotDividing", Mha(30, 4), "config.mha.num_heads", "d_model = 30"},
        BadConfig{"NoHeads", Mqa(32, 0), "config.mqa.num_heads", "got 0"},
        BadConfig{"KvHeadsNotDividing", Gqa(32, 8, 3), "config.gqa.num_kv_heads",
                  "num_q_heads = 8"},
        BadConfig{"QHeadsNotDividing", Gqa(30, 8, 2), "config.gqa.num_q_heads", "d_model = 30"},
        BadConfig{"ZeroDk", SelfAttn(16, 0, 4), "config.self_attention.d_k", "got 0"},
        BadConfig{"HugeDv", SelfAttn(16, 4, int64_t{1} << 40), "config.self_attention.d_v",
                  "expected 1.."},
        BadConfig{"OddRope", Mla(32, 4, 0, 16, 8, 3, 6), "config.mla.qk_rope_head_dim", "even"},
        BadConfig{"NoLatent", Mla(32, 4, 0, 0, 8, 4, 6), "config.mla.kv_lora_rank", "got 0"},
        BadConfig{"NegativeQLora", Mla(32, 4, -1, 16, 8, 4, 6), "config.mla.q_lora_rank",
                  "got -1"},
        BadConfig{"NegativeTheta",
                  With(Mla(32, 4, 0, 16, 8, 4, 6), [](ModuleConfig& c) { c.rope_theta = -1; }),
                  "config.mla.rope_theta", "got -1"}),
    [](const auto& p) { return p.param.name; });

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
  for (float x : (*a)->weights().at("kv_b_proj.weight").values()) EXPECT_LE(std::abs(x), 0.25f);
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

namespace attention {
namespace {

// Estimate against sums written out by hand from the layer definitions.
TEST(Estimate, LlamaLikeMhaGqaMqaMatchHandCounts) {
  const double d = 4096, dh = 128, L = 4096;
  // Causal prefill: visible pairs L(L+1)/2 per head.
  const double pairs = L * (L + 1) / 2;
  struct Case {
    ModuleConfig config;
    double kv_heads;
  };
  ModuleConfig mha;
  mha.variant = Variant::kMha;
  mha.d_model = 4096;
  mha.num_heads = 32;
  mha.bias = false;
  ModuleConfig gqa = mha;
  gqa.variant = Variant::kGqa;
  gqa.num_kv_heads = 8;
  ModuleConfig mqa = mha;
  mqa.variant = Variant::kMqa;
  for (const Case& c : {Case{mha, 32}, Case{gqa, 8}, Case{mqa, 1}}) {
    SCOPED_TRACE(VariantFieldName(c.config.variant));
    auto e = EstimateCosts(c.config, 2, 4096);
    ASSERT_OK(e);
    const double kv = c.kv_heads * dh;
    EXPECT_EQ(e->parameters, static_cast<int64_t>(2 * d * d + 2 * d * kv));
    EXPECT_EQ(e->kv_cache_bytes_per_token, static_cast<int64_t>(2 * kv * 4));
    EXPECT_EQ(e->kv_cache_bytes, static_cast<int64_t>(2 * kv * 4 * 2 * L));
    const double prefill = 2 * (2 * L * d * d)        // W_q
                           + 2 * (2 * L * d * 2 * kv)  // W_k, W_v
                           + 2 * 2 * 32 * pairs * 2 * dh  // QKᵀ and PV, causal
                           + 2 * (2 * L * d * d);      // W_o
    EXPECT_DOUBLE_EQ(e->prefill_flops, prefill);
    const double decode = 2 * d * d + 2 * d * 2 * kv + 2 * 32 * (L + 1) * 2 * dh + 2 * d * d;
    EXPECT_DOUBLE_EQ(e->decode_flops_per_token, decode);
  }
}

TEST(Estimate, DeepSeekV2MlaMatchesHandCounts) {
  ModuleConfig c;
  c.variant = Variant::kMla;
  c.d_model = 5120;
  c.num_heads = 128;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  const double d = 5120, h = 128, qr = 1536, r = 512, dn = 128, dr = 64, dv = 128, L = 1024;
  auto e = EstimateCosts(c, 1, 1024);
  ASSERT_OK(e);
  EXPECT_EQ(e->kv_cache_bytes_per_token, (512 + 64) * 4);
  EXPECT_EQ(e->kv_cache_bytes, (512 + 64) * 4 * 1024);
  const double q_path = 2 * (d * qr + qr * h * (dn + dr));
  const double o_proj = 2 * h * dv * d;
  // Prefill in the naive form: up-project every cached latent.
  const double prefill = L * q_path + 2 * L * d * (r + dr) + 2 * L * r * h * (dn + dv) +
                         2 * h * (L * (L + 1) / 2) * ((dn + dr) + dv) + L * o_proj;
  EXPECT_DOUBLE_EQ(e->prefill_flops, prefill);
  // Decode in the absorbed form: attend over L + 1 latents of width r + dr.
  const double decode = q_path + 2 * d * (r + dr) + 2 * h * dn * r + 2 * h * (L + 1) * ((r + dr) + r) +
                        2 * h * r * dv + o_proj;
  EXPECT_DOUBLE_EQ(e->decode_flops_per_token, decode);
}

TEST(Estimate, RejectsNegativeAndOverflowingSizes) {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = 64;
  c.num_heads = 4;
  EXPECT_EQ(EstimateCosts(c, -1, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(EstimateCosts(c, 1, -5).status().message(), "seq_len"));
  EXPECT_OK(EstimateCosts(c, 0, 0));
}

}  // namespace
}  // namespace attention
