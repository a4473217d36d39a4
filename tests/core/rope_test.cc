// Rotary embeddings of mha/gqa/mqa layers (config.rope): Forward equals a
// float64 reference written here (projections, each head's first rotary_dim
// dims rotated at positions offset + t, NeoX halves or GPT-J pairs, causal
// SDPA, output projection); Decode over chunks [5, 1, 1, 3, 1] equals
// Forward, each token at its absolute position; bad configs name the field.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/decode.h"
#include "core/module.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

struct RopeCase {
  std::string name;
  Variant variant;
  RopeStyle style;
  int64_t rotary_dim;  // 0: the head width
  double theta;
  bool qk_norm = false;
  double scale = 0.0;       // 0: 1/sqrt(d_head)
  bool output_bias = true;  // q/k/v always biased here
  double norm_eps = 0.0;
};

ModuleConfig ConfigOf(const RopeCase& c) {
  ModuleConfig config;
  config.variant = c.variant;
  config.d_model = 32;
  config.num_heads = 4;  // d_head 8
  if (c.variant == Variant::kGqa) config.num_kv_heads = 2;
  config.rope.style = c.style;
  config.rope.rotary_dim = c.rotary_dim;
  config.rope.theta = c.theta;
  config.qk_norm = c.qk_norm;
  config.norm_eps = c.norm_eps;
  config.scale = c.scale;
  config.output_bias = c.output_bias;
  return config;
}

// x [B, L, d_model] through the layer in double.
std::vector<double> Reference(const ModuleConfig& c, const WeightMap& w, const Tensor& x,
                              int64_t offset) {
  const int64_t b = x.dim(0), l = x.dim(1), d = c.d_model, hq = c.num_heads;
  const int64_t hkv = c.variant == Variant::kMha   ? hq
                      : c.variant == Variant::kMqa ? 1
                                                   : c.num_kv_heads;
  const int64_t dh = d / hq, rd = c.rope.rotary_dim == 0 ? dh : c.rope.rotary_dim;
  const double theta = c.rope.theta == 0 ? 10000.0 : c.rope.theta;
  auto linear = [&](const std::string& name, int64_t out) {
    const Tensor& wt = w.at(name + ".weight");
    const float* bias = w.count(name + ".bias") ? w.at(name + ".bias").data() : nullptr;
    std::vector<double> y(b * l * out);
    for (int64_t r = 0; r < b * l; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double s = bias != nullptr ? bias[o] : 0.0;
        for (int64_t i = 0; i < d; ++i) s += double{x.data()[r * d + i]} * wt.data()[o * d + i];
        y[r * out + o] = s;
      }
    return y;
  };
  std::vector<double> q = linear("W_q", hq * dh), k = linear("W_k", hkv * dh),
                      v = linear("W_v", hkv * dh);
  auto rotate = [&](std::vector<double>& t, int64_t heads) {
    if (c.rope.style == RopeStyle::kNone) return;
    for (int64_t r = 0; r < b * l; ++r) {
      const int64_t pos = offset + r % l;
      for (int64_t h = 0; h < heads; ++h) {
        double* vec = t.data() + (r * heads + h) * dh;
        for (int64_t i = 0; i < rd / 2; ++i) {
          // torch's float32 inverse frequencies, the angle in double.
          const float inv = static_cast<float>(1.0 / std::pow(theta, 2.0 * i / rd));
          const double angle = static_cast<double>(pos) * inv;
          double* a = c.rope.style == RopeStyle::kGptj ? vec + 2 * i : vec + i;
          double* z = c.rope.style == RopeStyle::kGptj ? vec + 2 * i + 1 : vec + i + rd / 2;
          const double x1 = *a, x2 = *z;
          *a = x1 * std::cos(angle) - x2 * std::sin(angle);
          *z = x2 * std::cos(angle) + x1 * std::sin(angle);
        }
      }
    }
  };
  // QK-norm: RMSNorm over each head, weights q_norm / k_norm, before RoPE.
  auto normalize = [&](std::vector<double>& t, const char* weight) {
    if (!c.qk_norm) return;
    const float* g = w.at(weight).data();
    const double eps = c.norm_eps == 0 ? 1e-6 : c.norm_eps;
    for (size_t at = 0; at < t.size(); at += dh) {
      double ms = 0;
      for (int64_t x0 = 0; x0 < dh; ++x0) ms += t[at + x0] * t[at + x0];
      const double inv = 1.0 / std::sqrt(ms / dh + eps);
      for (int64_t x0 = 0; x0 < dh; ++x0) t[at + x0] *= inv * g[x0];
    }
  };
  normalize(q, "q_norm.weight");
  normalize(k, "k_norm.weight");
  rotate(q, hq);
  rotate(k, hkv);
  const double scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(dh));
  std::vector<double> attn(b * l * hq * dh, 0.0);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t g = h / (hq / hkv);
      for (int64_t i = 0; i < l; ++i) {
        std::vector<double> p(i + 1);
        double max = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t x0 = 0; x0 < dh; ++x0)
            s += q[((bi * l + i) * hq + h) * dh + x0] * k[((bi * l + j) * hkv + g) * dh + x0];
          p[j] = s * scale;
          max = std::max(max, p[j]);
        }
        for (double& e : p) sum += (e = std::exp(e - max));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t x0 = 0; x0 < dh; ++x0)
            attn[((bi * l + i) * hq + h) * dh + x0] +=
                p[j] / sum * v[((bi * l + j) * hkv + g) * dh + x0];
      }
    }
  const Tensor& wo = w.at("W_o.weight");
  const float* bo = w.count("W_o.bias") ? w.at("W_o.bias").data() : nullptr;
  std::vector<double> y(b * l * d);
  for (int64_t r = 0; r < b * l; ++r)
    for (int64_t o = 0; o < d; ++o) {
      double s = bo != nullptr ? bo[o] : 0.0;
      for (int64_t i = 0; i < d; ++i) s += attn[r * d + i] * wo.data()[o * d + i];
      y[r * d + o] = s;
    }
  return y;
}

double RelErrorOf(const Tensor& got, const std::vector<double>& want) {
  double diff = 0, ref = 1e-30;
  for (int64_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::abs(got.data()[i] - want[i]));
    ref = std::max(ref, std::abs(want[i]));
  }
  return diff / ref;
}

class Rope : public testing::TestWithParam<RopeCase> {};

TEST_P(Rope, ForwardMatchesTheReferenceAndDecodeMatchesForward) {
  const ModuleConfig config = ConfigOf(GetParam());
  WeightMap weights;
  uint32_t seed = 3;
  for (const WeightSpec& s : ExpectedWeights(config)) {
    Tensor t = RandomTensor(s.shape, seed++);
    if (absl::StrContains(s.name, "_norm.")) {  // norm weights near 1, as trained ones are
      for (float& x : t.values()) x = 1.0f + 0.5f * x;
    }
    weights.emplace(s.name, std::move(t));
  }
  auto created = AttentionModule::Create(config, weights);
  ASSERT_OK(created);
  std::shared_ptr<const AttentionModule> m = std::move(*created);
  const Tensor x = RandomTensor({2, 11, 32}, 9);
  for (int64_t offset : {0, 37}) {
    ForwardInput in;
    in.query = &x;
    in.mask.causal = true;
    in.position_offset = offset;
    auto got = m->Forward(in);
    ASSERT_OK(got);
    EXPECT_LT(RelErrorOf(got->output, Reference(config, weights, x, offset)), 1e-5) << offset;
  }
  // Without rope the same weights give another layer: the rotation counts.
  ModuleConfig plain = config;
  plain.rope = RopeConfig();
  auto unrotated = AttentionModule::Create(plain, weights);
  ASSERT_OK(unrotated);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  auto full = m->Forward(in);
  ASSERT_OK(full);
  if (config.rope.style != RopeStyle::kNone) {
    EXPECT_GT(RelError((*unrotated)->Forward(in)->output, full->output), 1e-3);
  }

  auto pool = KvBlockPool::Create(1 << 22, 4 << 10);
  ASSERT_OK(pool);
  auto session = DecodeSession::Create(m, 2, 0, DType::kFloat32, pool->get());
  ASSERT_OK(session);
  int64_t t0 = 0;
  for (int64_t n : {5, 1, 1, 3, 1}) {
    auto step = (*session)->Step(Slice(x, t0, n));
    ASSERT_OK(step);
    EXPECT_LT(RelError(step->output, Slice(full->output, t0, n)), 1e-5) << t0;
    t0 += n;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Styles, Rope,
    testing::Values(
        RopeCase{"MhaNeox", Variant::kMha, RopeStyle::kNeox, 0, 0.0},
        RopeCase{"GqaNeoxTheta1e6", Variant::kGqa, RopeStyle::kNeox, 0, 1e6},
        RopeCase{"GqaNeoxPartial", Variant::kGqa, RopeStyle::kNeox, 4, 0.0},
        RopeCase{"MqaGptj", Variant::kMqa, RopeStyle::kGptj, 0, 500.0},
        RopeCase{"MhaGptjPartial", Variant::kMha, RopeStyle::kGptj, 6, 0.0},
        // Qwen3: QK-norm before RoPE; Qwen2: no o_proj bias.
        RopeCase{"GqaQkNormQwen3", Variant::kGqa, RopeStyle::kNeox, 0, 1e6, true, 0.0, true, 1e-5},
        RopeCase{"GqaNoOutputBiasQwen2", Variant::kGqa, RopeStyle::kNeox, 0, 1e6, false, 0.0,
                 false},
        RopeCase{"MqaScaleNoRope", Variant::kMqa, RopeStyle::kNone, 0, 0.0, false, 0.0625}),
    [](const auto& p) { return p.param.name; });

TEST(RopeConfig, BadFieldsAreNamed) {
  ModuleConfig c = ConfigOf({"", Variant::kGqa, RopeStyle::kNeox, 0, 0.0});
  c.rope.rotary_dim = 5;
  EXPECT_TRUE(absl::StrContains(ValidateConfig(c).message(), "config.rope.rotary_dim"));
  c.rope.rotary_dim = 10;  // > d_head 8
  EXPECT_TRUE(absl::StrContains(ValidateConfig(c).message(), "config.rope.rotary_dim"));
  c.rope.rotary_dim = 0;
  c.rope.theta = -1;
  EXPECT_TRUE(absl::StrContains(ValidateConfig(c).message(), "config.rope.theta"));
  c.rope.theta = 0;
  EXPECT_OK(ValidateConfig(c));
  ModuleConfig mla;
  mla.variant = Variant::kMla;
  mla.d_model = 32;
  mla.rope.style = RopeStyle::kNeox;
  EXPECT_TRUE(absl::StrContains(ValidateConfig(mla).message(), "config.rope"));
  // Cross-attention of a rope layer, and a negative offset.
  auto m = AttentionModule::CreateRandom(c, 1);
  ASSERT_OK(m);
  const Tensor x = RandomTensor({1, 3, 32}, 2);
  ForwardInput in;
  in.query = &x;
  in.key = &x;
  in.value = &x;
  EXPECT_TRUE(absl::StrContains((*m)->Forward(in).status().message(), "key:"));
  ForwardInput neg;
  neg.query = &x;
  neg.position_offset = -1;
  EXPECT_TRUE(absl::StrContains((*m)->Forward(neg).status().message(), "position_offset"));
}

}  // namespace
}  // namespace attention
