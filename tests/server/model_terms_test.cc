// Real models' terms through a real server: Attend's sliding window,
// soft-cap, sinks and LSE (and the LSE's merge of key shards held by two
// calls), a windowed, capped layer with sinks in Forward and Decode, and a
// Hugging Face layer sent from its safetensors file by prefix.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "core/module.h"
#include "core/safetensors.h"
#include "core/sdpa.h"
#include "tests/core/hf_cases.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

using client::AttendOptions;
using client::ForwardOptions;
namespace pb = ::attention::v1;

constexpr double kF32Tolerance = 1e-5;

// Keys [j0, j1) of a [B, H, L, D] tensor.
Tensor KeySlice(const Tensor& t, int64_t j0, int64_t j1) {
  Tensor s({t.dim(0), t.dim(1), j1 - j0, t.dim(3)});
  for (int64_t r = 0; r < t.dim(0) * t.dim(1); ++r) {
    std::copy_n(t.data() + (r * t.dim(2) + j0) * t.dim(3), (j1 - j0) * t.dim(3),
                s.data() + r * (j1 - j0) * t.dim(3));
  }
  return s;
}

TEST_F(ServerTest, AttendWithWindowSoftcapSinksAndLseEqualsTheCore) {
  const Tensor q = RandomTensor({2, 4, 5, 16}, 1), k = RandomTensor({2, 2, 40, 16}, 2);
  const Tensor v = RandomTensor({2, 2, 40, 8}, 3);
  AttendOptions o;
  o.mask.sliding_window = 7;
  o.logit_softcap = 1.5f;
  o.sinks = {0.5f, -1.0f, 0.0f, 2.0f};
  o.return_lse = true;
  o.return_weights = true;
  auto got = client_->Attend(q, k, v, o);
  ASSERT_OK(got);
  SdpaOptions core;
  core.logit_softcap = o.logit_softcap;
  core.sinks = o.sinks;
  core.return_lse = true;
  core.return_weights = true;
  auto want = AttendReference(q, k, v, o.mask, core);
  ASSERT_OK(want);
  EXPECT_LT(RelError(got->output, want->output), kF32Tolerance);
  EXPECT_LT(RelError(got->weights, want->weights), kF32Tolerance);
  ASSERT_EQ(got->lse.shape(), (std::vector<int64_t>{2, 4, 5}));
  EXPECT_LT(RelError(got->lse, want->lse), kF32Tolerance);
}

// Two calls over disjoint key shards (as two servers would hold them) merge
// into the attention over all keys through their LSEs.
TEST_F(ServerTest, AttendLseMergesKeyShardsExactly) {
  const Tensor q = RandomTensor({1, 8, 3, 32}, 4), k = RandomTensor({1, 2, 100, 32}, 5);
  const Tensor v = RandomTensor({1, 2, 100, 24}, 6);
  AttendOptions o;
  o.return_lse = true;
  auto all = client_->Attend(q, k, v, o);
  auto a = client_->Attend(q, KeySlice(k, 0, 37), KeySlice(v, 0, 37), o);
  auto b = client_->Attend(q, KeySlice(k, 37, 100), KeySlice(v, 37, 100), o);
  ASSERT_OK(all);
  ASSERT_OK(a);
  ASSERT_OK(b);
  Tensor merged(all->output.shape());
  const int64_t dv = 24;
  for (int64_t r = 0; r < all->lse.size(); ++r) {
    const double la = a->lse.data()[r], lb = b->lse.data()[r];
    const double l = std::max(la, lb) + std::log1p(std::exp(-std::abs(la - lb)));
    EXPECT_NEAR(l, all->lse.data()[r], 1e-5 * (1 + std::abs(l)));
    for (int64_t x = 0; x < dv; ++x) {
      merged.data()[r * dv + x] = static_cast<float>(std::exp(la - l) * a->output.data()[r * dv + x] +
                                                     std::exp(lb - l) * b->output.data()[r * dv + x]);
    }
  }
  EXPECT_LT(RelError(merged, all->output), kF32Tolerance);
}

TEST_F(ServerTest, BadTermsAreInvalidArgumentNamingTheField) {
  const Tensor q = RandomTensor({1, 2, 3, 8}, 1), k = RandomTensor({1, 1, 3, 8}, 2);
  const Tensor v = RandomTensor({1, 1, 3, 8}, 3);
  struct Bad {
    AttendOptions options;
    const char* field;
  };
  std::vector<Bad> cases(4);
  cases[0].options.mask.sliding_window = -2, cases[0].field = "mask.sliding_window";
  cases[1].options.logit_softcap = -1.0f, cases[1].field = "logit_softcap";
  cases[2].options.sinks = {1.0f, 2.0f, 3.0f}, cases[2].field = "sinks";
  cases[3].options.sinks = {1.0f, NAN}, cases[3].field = "sinks[1]";
  for (const Bad& bad : cases) {
    auto got = client_->Attend(q, k, v, bad.options);
    ASSERT_FALSE(got.ok()) << bad.field;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(got.status().message(), bad.field)) << got.status();
  }
  ModuleConfig latent;
  latent.variant = Variant::kMla;
  latent.d_model = 32;
  latent.num_heads = 4;
  latent.kv_lora_rank = 16;
  latent.qk_nope_head_dim = 8;
  latent.qk_rope_head_dim = 4;
  latent.v_head_dim = 8;
  pb::ModuleConfig mla = client::ConfigToProto(latent);
  mla.set_sliding_window(4);
  auto refused = client_->LoadModule("mla-window", mla);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "config.sliding_window"))
      << refused.status();
  // The server goes on serving.
  EXPECT_OK(client_->Attend(q, k, v, {}));
}

// Gemma 2 and gpt-oss in one layer: a window, a soft-cap and sinks; Forward
// equals the core's, and a Decode stream equals Forward chunk by chunk.
TEST_F(ServerTest, WindowedCappedLayerWithSinksForwardsAndDecodesAsTheCore) {
  ModuleConfig config;
  config.variant = Variant::kGqa;
  config.d_model = 32;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.rope.style = RopeStyle::kNeox;
  config.sliding_window = 3;
  config.logit_softcap = 0.75;
  config.attention_sinks = true;
  config.scale = 0.6;
  auto local = AttentionModule::CreateRandom(config, 7);
  ASSERT_OK(local);
  WeightMap weights = (*local)->weights();
  weights.at("sinks") = RandomTensor({4}, 8);
  auto module = AttentionModule::Create(config, weights);
  ASSERT_OK(module);
  auto info = client_->LoadModule("gemma-oss", client::ConfigToProto(config), weights);
  ASSERT_OK(info);
  EXPECT_EQ(info->config().sliding_window(), 3);
  EXPECT_FLOAT_EQ(info->config().logit_softcap(), 0.75f);
  EXPECT_TRUE(info->config().attention_sinks());
  const Tensor x = RandomTensor({2, 9, 32}, 9);
  ForwardOptions o;
  o.mask.causal = true;
  auto got = client_->Forward("gemma-oss", x, o);
  ASSERT_OK(got);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  auto want = (*module)->Forward(in);
  ASSERT_OK(want);
  EXPECT_LT(RelError(got->output, want->output), kF32Tolerance);
  auto stream = client_->StartDecode("gemma-oss", 2);
  ASSERT_OK(stream);
  int64_t t0 = 0;
  for (int64_t n : {5, 1, 1, 2}) {
    auto step = (*stream)->Step(Slice(x, t0, n));
    ASSERT_OK(step);
    EXPECT_LT(RelError(step->output, Slice(want->output, t0, n)), 1e-4) << t0;
    t0 += n;
  }
  EXPECT_OK((*stream)->Close());
}

// Hugging Face layers (tests/golden/hf) sent as they are in their files,
// weights_prefix picking the layer, configs through the wire: Gemma 2's
// local layer (heads · head_dim != d_model, a window and a soft-cap),
// gpt-oss with yarn and sinks, Llama 3's scaled rope and DeepSeek-V2 with
// interleaved yarn rope. Each gives the output transformers recorded.
TEST_F(ServerTest, HuggingFaceLayersSentByPrefixComputeAsTransformers) {
  std::map<std::string, HfCase> cases;
  for (HfCase& c : LoadCases()) cases.emplace(c.name, std::move(c));
  for (const char* name : {"gemma2_local", "gpt_oss_yarn", "llama3_scaled", "deepseek_v2_yarn"}) {
    SCOPED_TRACE(name);
    const HfCase& c = cases.at(name);
    auto file = ReadSafetensors(c.Path());
    ASSERT_OK(file);
    pb::LoadModuleRequest req;
    req.set_name(name);
    *req.mutable_config() = client::ConfigToProto(ConfigOf(c));
    req.set_weights_prefix(c.Str("prefix"));
    for (const auto& [tensor, t] : *file) {
      if (!absl::StartsWith(tensor, c.Str("prefix"))) continue;
      pb::Tensor& out = (*req.mutable_weights())[tensor];
      out.set_dtype(pb::DTYPE_FLOAT32);
      out.mutable_shape()->Assign(t.shape().begin(), t.shape().end());
      out.set_data(std::string(reinterpret_cast<const char*>(t.data()), t.size() * 4));
    }
    auto info = client_->LoadModule(req);
    ASSERT_OK(info);
    if (c.Str("variant") != "mla") {
      EXPECT_EQ(info->config().head_dim(), c.Int("head_dim"));
      EXPECT_EQ(info->config().rope().scaling().type() != pb::ROPE_SCALING_NONE,
                c.Str("rope_scaling") != "none");
    } else {
      EXPECT_EQ(info->config().mla().rope_scaling().type(), pb::ROPE_SCALING_YARN);
    }
    ForwardOptions o;
    o.mask.causal = true;
    auto got = client_->Forward(name, file->at("hidden_states"), o);
    ASSERT_OK(got);
    EXPECT_LT(RelError(got->output, file->at("output")), 1e-4);
  }
}

}  // namespace
}  // namespace attention
