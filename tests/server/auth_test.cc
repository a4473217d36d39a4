// Bearer tokens: the token file's comments and blank lines are not tokens,
// and only a listed token authenticates.
#include "server/auth.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;

TEST(ParseTokenFile, CommentsAndBlankLinesAreNotTokens) {
  auto tokens = server::ParseTokenFile(
      "# tokens for prod\n\n  s3cret  \n   # indented comment\r\nsecond\n\n");
  ASSERT_OK(tokens);
  EXPECT_EQ(*tokens, (std::vector<std::string>{"s3cret", "second"}));
}

TEST(ParseTokenFile, AFileWithoutATokenIsRefused) {
  for (const char* contents : {"", "\n\n", "# only a comment\n", "  \n# a\n#b"}) {
    auto tokens = server::ParseTokenFile(contents);
    EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument) << contents;
    EXPECT_TRUE(absl::StrContains(tokens.status().message(), "at least one token"));
  }
}

TEST(ParseTokenFile, ATokenHoldsNoWhitespace) {
  auto tokens = server::ParseTokenFile("good\nbad token # comment\n");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(tokens.status().message(), "line 2")) << tokens.status();
}

class TokenFileServer : public ServerTest {
 protected:
  void Customize(server::ServerOptions& options) override {
    auto tokens = server::ParseTokenFile("# tokens for prod\ns3cret\n");
    ASSERT_OK(tokens);
    options.service.auth_tokens = *tokens;
  }
  grpc::Status ListWith(const std::string& authorization) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", authorization);
    pb::ListModulesResponse resp;
    return client_->stub().ListModules(&ctx, pb::ListModulesRequest(), &resp);
  }
};

TEST_F(TokenFileServer, ACommentLineDoesNotAuthenticate) {
  EXPECT_EQ(ListWith("Bearer # tokens for prod").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListWith("Bearer ").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ListWith("Bearer s3cret").ok());
}

}  // namespace
}  // namespace attention
