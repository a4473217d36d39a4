// Deriving GQA/MQA (pooled K/V heads) and MLA (low-rank K/V) from MHA.
#include "core/variant_convert.h"

#include <gtest/gtest.h>

#include "core/internal/gemm.h"
#include "tests/core/test_configs.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

Tensor CausalOutput(const AttentionModule& m, const Tensor& x) {
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  return m.Forward(in).value().output;
}

TEST(VariantConvert, PoolingWithAllHeadsIsTheSameLayer) {
  auto mha = AttentionModule::CreateRandom(Mha(32, 4, true), 1);
  ASSERT_OK(mha);
  auto gqa = PoolKvHeads(**mha, 4);
  ASSERT_OK(gqa);
  EXPECT_EQ(gqa->config.variant, Variant::kGqa);
  auto m = AttentionModule::Create(gqa->config, gqa->weights);
  ASSERT_OK(m);
  const Tensor x = RandomTensor({1, 7, 32}, 2);
  EXPECT_LT(RelError(CausalOutput(**m, x), CausalOutput(**mha, x)), 1e-6);
}

TEST(VariantConvert, PoolingIdenticalHeadsLosesNothing) {
  // An MHA whose K/V heads are equal within pairs is exactly a GQA with 2 groups.
  WeightMap w = (*AttentionModule::CreateRandom(Mha(32, 4, true), 3))->weights();
  for (const char* name : {"W_k.weight", "W_v.weight", "W_k.bias", "W_v.bias"}) {
    Tensor& t = w.at(name);
    const int64_t head = t.size() / 4;
    for (int64_t g = 0; g < 2; ++g) {
      std::copy(t.data() + 2 * g * head, t.data() + (2 * g + 1) * head,
                t.data() + (2 * g + 1) * head);
    }
  }
  auto mha = AttentionModule::Create(Mha(32, 4, true), w);
  ASSERT_OK(mha);
  for (int64_t kv : {2, 1}) {
    auto pooled = PoolKvHeads(**mha, kv);
    ASSERT_OK(pooled);
    EXPECT_EQ(pooled->config.variant, kv == 1 ? Variant::kMqa : Variant::kGqa);
    auto m = AttentionModule::Create(pooled->config, pooled->weights);
    ASSERT_OK(m);
    const Tensor x = RandomTensor({2, 5, 32}, 4);
    const double err = RelError(CausalOutput(**m, x), CausalOutput(**mha, x));
    if (kv == 2) {
      EXPECT_LT(err, 1e-5);
    } else {
      EXPECT_GT(err, 1e-3);  // pooling different heads does lose information
    }
  }
}

TEST(VariantConvert, FullRankLatentReconstructsTheKvProjection) {
  auto mha = AttentionModule::CreateRandom(Mha(32, 4, false), 5);
  ASSERT_OK(mha);
  const Tensor calib = RandomTensor({16, 32}, 6);
  auto mla = LowRankMla(**mha, 32, 4, calib, 7);
  ASSERT_OK(mla);
  ASSERT_OK(ValidateConfig(mla->config));
  ASSERT_OK(AttentionModule::Create(mla->config, mla->weights));
  // kv_b_proj · kv_a_proj[:r] == [W_k; W_v] per head when r = d_model.
  const Tensor& kv_b = mla->weights.at("kv_b_proj.weight");       // [4·16, 32]
  const Tensor& kv_a = mla->weights.at("kv_a_proj_with_mqa.weight");  // [36, 32]
  Tensor rec({64, 32});
  ASSERT_OK(internal::Matmul(internal::Mat::RowMajor(kv_b.data(), 64, 32, 32),
                             internal::Mat::RowMajor(kv_a.data(), 32, 32, 32), rec.data(), 32));
  const WeightMap mha_weights = (*mha)->weights();
  const Tensor& wk = mha_weights.at("W_k.weight");
  const Tensor& wv = mha_weights.at("W_v.weight");
  Tensor want({64, 32});
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t j = 0; j < 32; ++j) {
        want.data()[(h * 16 + i) * 32 + j] = wk.data()[(h * 8 + i) * 32 + j];
        want.data()[(h * 16 + 8 + i) * 32 + j] = wv.data()[(h * 8 + i) * 32 + j];
      }
  EXPECT_LT(RelError(rec, want), 1e-4);
}

TEST(VariantConvert, MlaErrorShrinksAsTheLatentGrows) {
  auto mha = AttentionModule::CreateRandom(Mha(64, 4, false), 8);
  ASSERT_OK(mha);
  const Tensor x = RandomTensor({1, 16, 64}, 9);
  const Tensor calib({16, 64}, x.values());
  const Tensor want = CausalOutput(**mha, x);
  double last = 1e30;
  for (int64_t r : {8, 32, 64}) {
    auto mla = LowRankMla(**mha, r, 4, calib, 10);
    ASSERT_OK(mla);
    auto m = AttentionModule::Create(mla->config, mla->weights);
    ASSERT_OK(m);
    const double err = RelError(CausalOutput(**m, x), want);
    EXPECT_LT(err, last) << "rank " << r;
    last = err;
  }
  EXPECT_LT(last, 0.2);  // full rank: only the RMSNorm's per-token scale differs
}

TEST(VariantConvert, RejectsWhatItCannotConvert) {
  auto with_bias = AttentionModule::CreateRandom(Mha(32, 4, true), 1);
  EXPECT_EQ(LowRankMla(**with_bias, 8, 4, RandomTensor({4, 32}, 1), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PoolKvHeads(**with_bias, 3).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attention
