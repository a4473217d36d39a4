// TensorResponse's bytes are the message they stand for, with the tensors'
// buffers referenced rather than copied; the raw Attend and Forward methods
// refuse bytes that are not their request and go on serving.
#include "server/wire.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;
using server::TensorResponse;

std::string Bytes(const grpc::ByteBuffer& buffer, std::vector<grpc::Slice>* slices) {
  EXPECT_TRUE(buffer.Dump(slices).ok());
  std::string bytes;
  for (const auto& s : *slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes;
}

TEST(TensorResponse, SerialisesTheMessageWithItsTensorsReferencedNotCopied) {
  pb::AttendResponse head;
  head.set_variant("gqa");
  head.mutable_timing()->set_compute_us(1234);
  head.mutable_timing()->set_flops(99);
  TensorResponse response(&head);
  float* out = static_cast<float*>(response.AddTensor(
      pb::AttendResponse::kOutputFieldNumber, pb::DTYPE_FLOAT32, {1, 2, 3, 4}, 24 * sizeof(float)));
  for (int i = 0; i < 24; ++i) out[i] = 0.5f * static_cast<float>(i) - 3.0f;
  uint16_t* weights = static_cast<uint16_t*>(response.AddTensor(
      pb::AttendResponse::kWeightsFieldNumber, pb::DTYPE_FLOAT16, {1, 2, 3, 5}, 30 * 2));
  for (int i = 0; i < 30; ++i) weights[i] = static_cast<uint16_t>(0x3c00 + i);

  const grpc::ByteBuffer buffer = response.Serialize();
  std::vector<grpc::Slice> slices;
  const std::string bytes = Bytes(buffer, &slices);
  EXPECT_EQ(bytes.size(), response.ByteSizeLong());
  // The output's slice is the buffer that was written, not a copy of it.
  bool referenced = false;
  for (const auto& s : slices) referenced |= s.begin() == reinterpret_cast<const uint8_t*>(out);
  EXPECT_TRUE(referenced);

  pb::AttendResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.variant(), "gqa");
  EXPECT_EQ(parsed.timing().compute_us(), 1234);
  EXPECT_EQ(parsed.timing().flops(), 99);
  EXPECT_EQ(parsed.output().dtype(), pb::DTYPE_FLOAT32);
  EXPECT_EQ(std::vector<int64_t>(parsed.output().shape().begin(), parsed.output().shape().end()),
            (std::vector<int64_t>{1, 2, 3, 4}));
  ASSERT_EQ(parsed.output().data().size(), 24 * sizeof(float));
  EXPECT_EQ(std::memcmp(parsed.output().data().data(), out, 24 * sizeof(float)), 0);
  EXPECT_EQ(parsed.weights().dtype(), pb::DTYPE_FLOAT16);
  EXPECT_EQ(parsed.weights().shape_size(), 4);
  ASSERT_EQ(parsed.weights().data().size(), 60u);
  EXPECT_EQ(std::memcmp(parsed.weights().data().data(), weights, 60), 0);
  // The same message as protobuf itself would write it (fields in another
  // order): the same size, and each field exactly once.
  EXPECT_EQ(parsed.ByteSizeLong(), bytes.size());
}

TEST(TensorResponse, HeadAloneAndClearedResponses) {
  pb::ForwardResponse head;
  head.mutable_timing()->set_queue_us(7);
  TensorResponse response(&head);
  std::vector<grpc::Slice> slices;
  pb::ForwardResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(Bytes(response.Serialize(), &slices)));
  EXPECT_EQ(parsed.timing().queue_us(), 7);
  EXPECT_FALSE(parsed.has_output());

  response.AddTensor(pb::ForwardResponse::kOutputFieldNumber, pb::DTYPE_FLOAT32, {1, 1, 1}, 4);
  response.Clear();
  EXPECT_EQ(response.ByteSizeLong(), 0u);
  slices.clear();
  EXPECT_EQ(Bytes(response.Serialize(), &slices), "");
}

// A unary call of `method` with raw request bytes.
grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                      const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  grpc::Slice slice(request);
  const grpc::ByteBuffer out(&slice, 1);
  grpc::ByteBuffer in;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&ctx, method, out, &cq);
  call->StartCall();
  call->Finish(&in, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  return status;
}

TEST_F(ServerTest, RawMethodsRefuseBytesThatAreNotTheirRequestAndGoOnServing) {
  // Field 1 (query), length-delimited, claiming far more bytes than follow.
  const std::string truncated("\x0a\xff\xff\x03\x01\x02", 6);
  for (const char* method :
       {"/attention.v1.AttentionService/Attend", "/attention.v1.AttentionService/Forward"}) {
    const grpc::Status s = RawUnary(client_->channel(), method, truncated);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_TRUE(absl::StrContains(s.error_message(), "request: not a valid serialised"))
        << s.error_message();
  }
  const Tensor q = RandomTensor({1, 2, 3, 8}, 1), k = RandomTensor({1, 2, 5, 8}, 2),
               v = RandomTensor({1, 2, 5, 4}, 3);
  auto r = client_->Attend(q, k, v, {});
  ASSERT_OK(r);
  EXPECT_EQ(r->output.shape(), (std::vector<int64_t>{1, 2, 3, 4}));
}

TEST_F(ServerTest, AnUploadCutByTheDeadlineIsCountedAsTheDeadlineNotAsBadBytes) {
  // 48 MiB of request: the upload outlasts deadlines of a few milliseconds.
  pb::AttendRequest r;
  for (pb::Tensor* t : {r.mutable_query(), r.mutable_key(), r.mutable_value()}) {
    t->set_dtype(pb::DTYPE_FLOAT32);
    for (int64_t d : {1, 1, 4096, 1024}) t->add_shape(d);
    t->set_data(std::string(size_t{4096} * 1024 * 4, '\0'));
  }
  for (int ms : {5, 20, 50, 100, 200, 300, 500}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
    pb::AttendResponse resp;
    const grpc::Status s = client_->stub().Attend(&ctx, r, &resp);
    EXPECT_FALSE(s.ok());
  }
  // The server sees each cut call when its transport does: wait until it
  // has counted them and computes nothing. (An upload that arrived whole
  // may still compute and end as DEADLINE_EXCEEDED, or OK on a fast CPU.)
  std::map<std::string, int64_t> codes;
  for (int i = 0; i < 400; ++i) {
    auto info = client_->GetServerInfo();
    ASSERT_OK(info);
    codes.clear();
    for (const pb::MethodStats& m : info->methods()) {
      if (m.method() == "Attend") codes = {m.codes().begin(), m.codes().end()};
    }
    if (info->load().inflight_requests() == 0 && i > 40) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(codes["INVALID_ARGUMENT"], 0);
}

}  // namespace
}  // namespace attention
