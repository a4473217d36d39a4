// attention_cli compare's engine at a small size against a real server.
#include "client/compare.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "core/npy.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

TEST_F(ServerTest, CompareMeasuresEveryVariant) {
  client::CompareOptions o;
  o.d_model = 128;
  o.heads = 8;
  o.seq = 64;
  o.gqa_kv_heads = {4, 2};
  o.mla_rank = 32;
  o.mla_rope = 8;
  o.decode_steps = 3;
  o.quality_len = 32;
  auto rows = client::RunCompare(*client_, o);
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 5u);
  const std::vector<int64_t> kv_bytes = {2 * 8 * 16 * 4, 2 * 4 * 16 * 4, 2 * 2 * 16 * 4,
                                         2 * 16 * 4, (32 + 8) * 4};
  for (size_t i = 0; i < rows->size(); ++i) {
    const auto& r = (*rows)[i];
    SCOPED_TRACE(r.variant);
    EXPECT_EQ(r.kv_bytes_per_token, kv_bytes[i]);
    EXPECT_EQ(r.parameters, ParameterCount(r.config));
    EXPECT_GT(r.prefill_ms, 0);
    EXPECT_GT(r.decode_ms, 0);
  }
  EXPECT_EQ((*rows)[0].relative_error, 0.0);  // MHA against itself
  // Pooling more heads together loses more.
  EXPECT_LT((*rows)[1].relative_error, (*rows)[2].relative_error);
  EXPECT_LT((*rows)[2].relative_error, (*rows)[3].relative_error);
  EXPECT_GT((*rows)[4].relative_error, 0.0);

  const std::string md = client::CompareMarkdown(o, *rows);
  EXPECT_TRUE(absl::StrContains(md, "| variant | parameters | KV bytes/token")) << md;
  EXPECT_TRUE(absl::StrContains(md, "MLA (latent 32+8)")) << md;
  const std::string svg = client::CompareSvg(o, *rows);
  EXPECT_TRUE(absl::StartsWith(svg, "<svg ")) << svg;
  EXPECT_TRUE(absl::StrContains(svg, "</svg>"));
  EXPECT_TRUE(absl::StrContains(svg, "GQA (2 kv heads)"));
  // The comparison's temporary modules are gone again.
  EXPECT_EQ(client_->ListModules()->size(), 5u);
}

// A PyTorch MHA layer with biases (nn.Linear's default), as `load` takes it.
TEST_F(ServerTest, CompareHonoursAStateDictWithBiases) {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = 64;
  c.num_heads = 4;
  c.bias = true;
  auto mha = AttentionModule::CreateRandom(c, 3);
  ASSERT_OK(mha);
  const std::string dir = testing::TempDir() + "/biased-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  for (const auto& [name, tensor] : (*mha)->weights()) {
    ASSERT_OK(WriteNpy(dir + "/" + name + ".npy", tensor));
  }
  ASSERT_TRUE(std::filesystem::exists(dir + "/W_k.bias.npy"));
  client::CompareOptions o;
  o.d_model = 64;
  o.heads = 4;
  o.seq = 16;
  o.gqa_kv_heads = {2};
  o.decode_steps = 1;
  o.quality_len = 16;
  o.weights_dir = dir;
  auto rows = client::RunCompare(*client_, o);
  std::filesystem::remove_all(dir);
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_TRUE((*rows)[0].config.bias);
  EXPECT_EQ((*rows)[0].parameters, ParameterCount(c));
  EXPECT_EQ((*rows)[0].relative_error, 0.0);  // the state_dict's own layer
  EXPECT_GT((*rows)[3].relative_error, 0.0);  // MLA, without the biases
  const std::string md = client::CompareMarkdown(o, *rows);
  EXPECT_TRUE(absl::StrContains(md, "The state_dict has biases")) << md;
}

// Default ranks follow d_model (d_model / 8, d_head / 2), so the MLA layer
// is the smaller one at a small d_model too.
TEST_F(ServerTest, CompareScalesTheMlaRanksWithDModel) {
  client::CompareOptions o;
  o.d_model = 128;
  o.heads = 8;
  o.seq = 16;
  o.gqa_kv_heads = {};
  o.decode_steps = 1;
  o.quality_len = 16;
  auto rows = client::RunCompare(*client_, o);
  ASSERT_OK(rows);
  const client::CompareRow& mla = rows->back();
  EXPECT_EQ(mla.config.kv_lora_rank, 16);
  EXPECT_EQ(mla.config.qk_rope_head_dim, 8);
  EXPECT_LT(mla.parameters, rows->front().parameters);
  const std::string md = client::CompareMarkdown(o, *rows);
  EXPECT_FALSE(absl::StrContains(md, "more parameters than the MHA one")) << md;
  // Ranks chosen too large for d_model are said so.
  o.mla_rank = 128;
  o.mla_rope = 8;
  rows = client::RunCompare(*client_, o);
  ASSERT_OK(rows);
  EXPECT_GT(rows->back().parameters, rows->front().parameters);
  EXPECT_TRUE(absl::StrContains(client::CompareMarkdown(o, *rows),
                                "more parameters than the MHA one"));
}

}  // namespace
}  // namespace attention
