// Config validation, the state_dict schema and the sizes that follow from a
// config.
#include "core/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "tests/core/test_configs.h"

namespace attention {
namespace {

TEST(ConfigSizes, KvCacheBytesPerTokenFollowTheVariant) {
  // MHA 2·H·d, GQA 2·G·d, MQA 2·d, MLA (kv_lora_rank + rope_dim), × 4 bytes.
  EXPECT_EQ(KvCacheBytesPerToken(Mha(4096, 32)), 2 * 32 * 128 * 4);
  EXPECT_EQ(KvCacheBytesPerToken(Gqa(4096, 32, 8)), 2 * 8 * 128 * 4);
  EXPECT_EQ(KvCacheBytesPerToken(Mqa(4096, 32)), 2 * 128 * 4);
  EXPECT_EQ(KvCacheBytesPerToken(Mla(5120, 128, 1536, 512, 128, 64, 128)), (512 + 64) * 4);
  EXPECT_EQ(KvCacheBytesPerToken(SelfAttn(64, 16, 24)), (16 + 24) * 4);
}

TEST(ConfigSizes, ParameterCountsMatchHandCounts) {
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

// Gemma 2 2B's attention: 8 query heads of 256 over d_model 2304, 4 kv heads.
TEST(ConfigSizes, AHeadWidthApartFromDModelShapesTheProjections) {
  ModuleConfig c = Gqa(2304, 8, 4);
  c.bias = false;
  c.head_dim = 256;
  ASSERT_TRUE(ValidateConfig(c).ok()) << ValidateConfig(c);
  EXPECT_EQ(HeadDimK(c), 256);
  const std::vector<WeightSpec> w = ExpectedWeights(c);
  EXPECT_EQ(w[0].shape, (std::vector<int64_t>{8 * 256, 2304}));  // W_q
  EXPECT_EQ(w[1].shape, (std::vector<int64_t>{4 * 256, 2304}));  // W_k
  EXPECT_EQ(w[3].shape, (std::vector<int64_t>{2304, 8 * 256}));  // W_o
  EXPECT_EQ(ParameterCount(c), 2 * 2304 * 2048 + 2 * 2304 * 1024);
  EXPECT_EQ(KvCacheBytesPerToken(c), 2 * 4 * 256 * 4);
}

struct BadConfig {
  std::string name;
  ModuleConfig config;
  std::string field;
  std::string detail;
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class ConfigBad : public testing::TestWithParam<BadConfig> {};

TEST_P(ConfigBad, IsInvalidArgumentNamingTheField) {
  const BadConfig& c = GetParam();
  const absl::Status s = ValidateConfig(c.config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.message(), c.field)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), c.detail)) << s;
}

ModuleConfig With(ModuleConfig c, void (*edit)(ModuleConfig&)) {
  edit(c);
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigBad,
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
        BadConfig{"HeadDimOnMla",
                  With(Mla(32, 4, 0, 16, 8, 4, 6), [](ModuleConfig& c) { c.head_dim = 8; }),
                  "config.head_dim", "not mla"},
        BadConfig{"NegativeHeadDim", With(Mha(32, 4), [](ModuleConfig& c) { c.head_dim = -8; }),
                  "config.head_dim", "got -8"},
        BadConfig{"WindowOnSelfAttention",
                  With(SelfAttn(16, 4, 4), [](ModuleConfig& c) { c.sliding_window = 4; }),
                  "config.sliding_window", "not self_attention"},
        BadConfig{"NegativeWindow", With(Gqa(32, 8, 2), [](ModuleConfig& c) { c.sliding_window = -1; }),
                  "config.sliding_window", "got -1"},
        BadConfig{"NanSoftcap", With(Mqa(32, 4), [](ModuleConfig& c) { c.logit_softcap = NAN; }),
                  "config.logit_softcap", "finite"},
        BadConfig{"SinksOnMla",
                  With(Mla(32, 4, 0, 16, 8, 4, 6), [](ModuleConfig& c) { c.attention_sinks = true; }),
                  "config.attention_sinks", "not mla"},
        BadConfig{"InterleaveOnGqa",
                  With(Gqa(32, 8, 2), [](ModuleConfig& c) { c.mla_rope_interleave = true; }),
                  "config.mla.rope_interleave", "not gqa"},
        BadConfig{"YarnWithoutFactor", With(Gqa(32, 8, 2),
                                            [](ModuleConfig& c) {
                                              c.rope.style = RopeStyle::kNeox;
                                              c.rope.scaling.type = RopeScalingType::kYarn;
                                              c.rope.scaling.original_max_position = 4096;
                                            }),
                  "config.rope.scaling.factor", "got 0"},
        BadConfig{"Llama3WithoutContext", With(Mha(32, 4),
                                               [](ModuleConfig& c) {
                                                 c.rope.style = RopeStyle::kNeox;
                                                 c.rope.scaling.type = RopeScalingType::kLlama3;
                                                 c.rope.scaling.factor = 8;
                                               }),
                  "config.rope.scaling.original_max_position", "got 0"},
        BadConfig{"MlaScalingOnGqa", With(Gqa(32, 8, 2),
                                          [](ModuleConfig& c) {
                                            c.mla_rope_scaling.type = RopeScalingType::kLinear;
                                            c.mla_rope_scaling.factor = 2;
                                          }),
                  "config.mla.rope_scaling", "not gqa"},
        BadConfig{"NegativeTheta",
                  With(Mla(32, 4, 0, 16, 8, 4, 6), [](ModuleConfig& c) { c.rope_theta = -1; }),
                  "config.mla.rope_theta", "got -1"}),
    [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace attention
