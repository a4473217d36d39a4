// Status messages reach clients whole or capped, never as a transport error.
#include "server/grpc_status.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;

TEST(CapStatusMessage, ShortMessagesPassAndLongOnesAreCutAtACharacter) {
  EXPECT_EQ(server::CapStatusMessage("query: bad"), "query: bad");
  std::string long_message = "name: ";
  for (int i = 0; i < 5000; ++i) long_message += "\xc3\xa9";  // é, two bytes
  const std::string capped = server::CapStatusMessage(long_message);
  EXPECT_LE(capped.size(), server::kMaxStatusMessageBytes);
  EXPECT_TRUE(absl::StartsWith(capped, "name: \xc3\xa9"));
  EXPECT_TRUE(absl::EndsWith(capped, " bytes cut)")) << capped;
  const size_t cut = capped.find("... (");
  ASSERT_NE(cut, std::string::npos);
  EXPECT_EQ((cut - 6) % 2, 0u) << "cut inside a character";
}

TEST(ToGrpcStatus, KeepsTheCode) {
  EXPECT_TRUE(server::ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status s = server::ToGrpcStatus(absl::NotFoundError("module: none"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "module: none");
}

TEST_F(ServerTest, AHugeEchoedInputStillGivesTheRealCode) {
  {  // A 20 KB module name.
    grpc::ClientContext ctx;
    pb::ForwardRequest req;
    req.set_module(std::string(20000, 'm'));
    pb::ForwardResponse resp;
    const grpc::Status s = client_->stub().Forward(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
    EXPECT_LE(s.error_message().size(), server::kMaxStatusMessageBytes);
  }
  {  // A shape of 10^6 dimensions.
    grpc::ClientContext ctx;
    pb::AttendRequest req;
    for (int i = 0; i < 1000000; ++i) req.mutable_query()->add_shape(1);
    req.mutable_query()->set_dtype(pb::DTYPE_FLOAT32);
    *req.mutable_key() = req.query();
    *req.mutable_value() = req.query();
    pb::AttendResponse resp;
    const grpc::Status s = client_->stub().Attend(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_TRUE(absl::StartsWith(s.error_message(), "query: shape")) << s.error_message();
  }
  auto info = client_->GetServerInfo();
  EXPECT_OK(info);
}

}  // namespace
}  // namespace attention
