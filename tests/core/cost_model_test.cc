// The cost model against sums written out by hand from the layer
// definitions.
#include "core/cost_model.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/core/test_configs.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

TEST(CostModel, LlamaLikeMhaGqaMqaMatchHandCounts) {
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

TEST(CostModel, DeepSeekV2MlaMatchesHandCounts) {
  // DeepSeek-V2's attention layer.
  const ModuleConfig c = Mla(5120, 128, 1536, 512, 128, 64, 128);
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

TEST(CostModel, RejectsNegativeAndOverflowingSizes) {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = 64;
  c.num_heads = 4;
  EXPECT_EQ(EstimateCosts(c, -1, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(EstimateCosts(c, 1, -5).status().message(), "seq_len"));
  EXPECT_OK(EstimateCosts(c, 0, 0));
}

TEST(CostModel, CausalPairsMatchCountingThem) {
  for (int64_t lq = 0; lq <= 6; ++lq) {
    for (int64_t lk = 0; lk <= 6; ++lk) {
      double pairs = 0;  // bottom-right causal: key j visible to query i iff j <= i + Lk - Lq
      for (int64_t i = 0; i < lq; ++i) {
        for (int64_t j = 0; j < lk; ++j) pairs += j <= i + lk - lq ? 1 : 0;
      }
      EXPECT_DOUBLE_EQ(SdpaFlops(2, 3, lq, lk, 4, 5, true), 2 * 2 * 3 * pairs * 9)
          << "Lq " << lq << " Lk " << lk;
      EXPECT_DOUBLE_EQ(SdpaFlops(2, 3, lq, lk, 4, 5, false), 2 * 2 * 3 * lq * lk * 9.0);
    }
  }
}

// Sizes from the wire reach the cost model before validation: they must not
// wrap (B·Hq was an int64 product) nor take time (causal pairs were a loop
// over Lq).
TEST(CostModel, HugeSizesSaturateInsteadOfWrapping) {
  EXPECT_DOUBLE_EQ(SdpaFlops(int64_t{1} << 62, 4, 1, 1, 1, 1, false), 0x1p66);
  const double l = 0x1p40;
  EXPECT_DOUBLE_EQ(SdpaFlops(1, 1, int64_t{1} << 40, int64_t{1} << 40, 1, 1, true),
                   2 * (l * (l + 1) / 2) * 2);
  const ModuleConfig mha = Mha(64, 4);
  EXPECT_GE(LayerFlops(mha, int64_t{1} << 62, 4, 4, 4, false, MlaForm::kNaive),
            SdpaFlops(int64_t{1} << 62, 4, 4, 4, 16, 16, false));
  EXPECT_EQ(ForwardWorkingBytes(mha, INT64_MAX, INT64_MAX, INT64_MAX, true), INT64_MAX);
}

}  // namespace
}  // namespace attention
