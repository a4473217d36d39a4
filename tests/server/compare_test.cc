// attention_cli compare's engine at a small size against a real server.
#include "client/compare.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
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

}  // namespace
}  // namespace attention
