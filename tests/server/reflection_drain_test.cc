// Server reflection lists the services; Drain lets calls in flight finish and
// refuses new ones.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

// One ServerReflectionInfo exchange with a hand-encoded request (the
// reflection protos are not shipped as headers): list_services = "" is field
// 7, length-delimited, empty.
std::string ListServicesRaw(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  void* tag = nullptr;
  bool ok = false;
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                               &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
  const std::string request("\x3a\x00", 2);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1), in;
  call->Write(out, reinterpret_cast<void*>(2));
  EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
  call->Read(&in, reinterpret_cast<void*>(3));
  EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
  call->WritesDone(reinterpret_cast<void*>(4));
  EXPECT_TRUE(cq.Next(&tag, &ok));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  EXPECT_TRUE(cq.Next(&tag, &ok));
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes;
}

TEST_F(ServerTest, ReflectionListsTheServices) {
  const std::string raw = ListServicesRaw(client_->channel());
  EXPECT_TRUE(absl::StrContains(raw, "attention.v1.AttentionService")) << raw;
  EXPECT_TRUE(absl::StrContains(raw, "grpc.health.v1.Health")) << raw;
}

TEST_F(ServerTest, DrainFinishesCallsInFlightAndRefusesNewOnes) {
  // A call long enough to be in flight when the drain starts.
  const Tensor q = RandomTensor({1, 4, 1024, 64}, 1), k = RandomTensor({1, 4, 1024, 64}, 2),
               v = RandomTensor({1, 4, 1024, 64}, 3);
  absl::StatusOr<client::AttendResult> slow;
  std::thread caller([&] {
    client::AttendOptions o;
    o.return_weights = true;
    slow = client_->Attend(q, k, v, o);
  });
  // Wait until the server has the call (computing or queued).
  while (server_->service().admission().inflight() == 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  server_->Drain(absl::Seconds(30));  // returns once in-flight calls are done
  caller.join();
  ASSERT_OK(slow);
  EXPECT_EQ(slow->weights.dim(3), 1024);
  auto refused = client_->GetServerInfo();
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
}

TEST_F(ServerTest, DrainLetsAnOpenDecodeStreamFinishAndRefusesNewOnes) {
  auto stream = client_->StartDecode("demo-gqa", 1);
  ASSERT_OK(stream);
  ASSERT_OK((*stream)->Step(RandomTensor({1, 3, 512}, 1)));
  std::thread drain([&] { server_->Drain(absl::Seconds(30)); });  // waits for the stream
  while (!server_->service().admission().draining()) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  auto refused = client_->StartDecode("demo-gqa", 1);
  ASSERT_OK(refused);  // start is answered by the first read
  EXPECT_EQ((*refused)->Step(RandomTensor({1, 1, 512}, 2)).status().code(),
            absl::StatusCode::kUnavailable);
  // The stream opened before the drain decodes on, then ends.
  auto next = (*stream)->Step(RandomTensor({1, 2, 512}, 3));
  ASSERT_OK(next);
  EXPECT_EQ(next->cached_tokens, 5);
  ASSERT_OK((*stream)->Close());
  drain.join();
}

}  // namespace
}  // namespace attention
