// Table-driven: malformed requests get the right status code and a message
// naming the field, the expected and the actual value; the server keeps
// answering correctly afterwards.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "absl/strings/match.h"
#include "core/sdpa.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;

pb::Tensor Floats(std::vector<int64_t> shape, pb::DType dtype = pb::DTYPE_FLOAT32) {
  pb::Tensor t;
  t.set_dtype(dtype);
  int64_t n = 1;
  for (int64_t d : shape) {
    t.add_shape(d);
    n *= d;
  }
  const int size = dtype == pb::DTYPE_FLOAT32                           ? 4
                   : dtype == pb::DTYPE_BOOL || dtype == pb::DTYPE_INT8 ? 1
                                                                        : 2;
  t.set_data(std::string(static_cast<size_t>(std::max<int64_t>(n, 0)) * size, '\0'));
  return t;
}

// A valid GQA Attend request: q [2, 4, 3, 8], k/v [2, 2, 9, 8].
pb::AttendRequest GoodAttend() {
  pb::AttendRequest r;
  *r.mutable_query() = Floats({2, 4, 3, 8});
  *r.mutable_key() = Floats({2, 2, 9, 8});
  *r.mutable_value() = Floats({2, 2, 9, 8});
  return r;
}

pb::ForwardRequest GoodForward(const std::string& module = "demo-gqa") {
  pb::ForwardRequest r;
  r.set_module(module);
  *r.mutable_query() = Floats({1, 4, 512});
  return r;
}

pb::LoadModuleRequest GoodLoad() {
  pb::LoadModuleRequest r;
  r.set_name("bad-input-module");
  r.mutable_config()->set_d_model(32);
  r.mutable_config()->mutable_mha()->set_num_heads(4);
  return r;
}

using Call = std::function<grpc::Status(pb::AttentionService::Stub&)>;

template <typename Req, typename Resp>
Call MakeCall(grpc::Status (pb::AttentionService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                 Resp*),
              Req request) {
  return [method, request](pb::AttentionService::Stub& stub) {
    grpc::ClientContext ctx;
    Resp resp;
    return (stub.*method)(&ctx, request, &resp);
  };
}

Call Attend(std::function<void(pb::AttendRequest&)> edit) {
  pb::AttendRequest r = GoodAttend();
  edit(r);
  return MakeCall(&pb::AttentionService::Stub::Attend, r);
}
Call Forward(std::function<void(pb::ForwardRequest&)> edit) {
  pb::ForwardRequest r = GoodForward();
  edit(r);
  return MakeCall(&pb::AttentionService::Stub::Forward, r);
}
Call Load(std::function<void(pb::LoadModuleRequest&)> edit) {
  pb::LoadModuleRequest r = GoodLoad();
  edit(r);
  return MakeCall(&pb::AttentionService::Stub::LoadModule, r);
}

struct BadRequest {
  std::string name;
  Call call;
  grpc::StatusCode code;
  std::vector<std::string> message_parts;  // each must appear in the message
};

std::map<std::string, pb::Tensor> MhaWeights(int64_t d) {
  std::map<std::string, pb::Tensor> w;
  for (const char* n : {"W_q", "W_k", "W_v", "W_o"}) {
    w[std::string(n) + ".weight"] = Floats({d, d});
    w[std::string(n) + ".bias"] = Floats({d});
  }
  return w;
}

std::vector<BadRequest> Table() {
  using grpc::StatusCode;
  const auto kInvalid = StatusCode::INVALID_ARGUMENT;
  return {
      {"AttendWithoutQuery",
       Attend([](auto& r) { r.clear_query(); }),
       kInvalid,
       {"query: required"}},
      {"QueryDtypeUnspecified",
       Attend([](auto& r) { r.mutable_query()->set_dtype(pb::DTYPE_UNSPECIFIED); }),
       kInvalid,
       {"query: dtype expected DTYPE_FLOAT32", "got DTYPE_UNSPECIFIED"}},
      {"QueryDtypeBool",
       Attend([](auto& r) {
         *r.mutable_query() = Floats({2, 4, 3, 8}, pb::DTYPE_BOOL);
       }),
       kInvalid,
       {"query: dtype", "got DTYPE_BOOL"}},
      {"QueryDtypeInt8",
       Attend([](auto& r) {
         *r.mutable_query() = Floats({2, 4, 3, 8}, pb::DTYPE_INT8);
       }),
       kInvalid,
       {"query: dtype", "got DTYPE_INT8"}},
      {"OutputDtypeInt8",
       Attend([](auto& r) { r.set_output_dtype(pb::DTYPE_INT8); }),
       kInvalid,
       {"output_dtype", "got DTYPE_INT8"}},
      {"QueryRank3",
       Attend([](auto& r) {
         *r.mutable_query() = Floats({2, 4, 24});
       }),
       kInvalid,
       {"query: shape expected rank 4 [B, Hq, Lq, Dk], got [2, 4, 24]"}},
      {"QueryDataShort",
       Attend([](auto& r) { r.mutable_query()->mutable_data()->pop_back(); }),
       kInvalid,
       {"query: data expected 768 bytes", "got 767"}},
      {"KeyZeroDim",
       Attend([](auto& r) {
         *r.mutable_key() = Floats({2, 2, 0, 8});
       }),
       kInvalid,
       {"key: shape[2] expected >= 1, got 0"}},
      {"HkvDoesNotDivideHq",
       Attend([](auto& r) {
         *r.mutable_key() = Floats({2, 3, 9, 8});
         *r.mutable_value() = Floats({2, 3, 9, 8});
       }),
       kInvalid,
       {"key: dim 1 (Hkv) must divide", "Hq = 4", "Hkv = 3"}},
      {"KeyDkMismatch",
       Attend([](auto& r) {
         *r.mutable_key() = Floats({2, 2, 9, 7});
       }),
       kInvalid,
       {"key: dim 3 (Dk, as query) expected 8, got 7"}},
      {"ValueLkMismatch",
       Attend([](auto& r) {
         *r.mutable_value() = Floats({2, 2, 8, 8});
       }),
       kInvalid,
       {"value: dim 2 (Lk, as key) expected 9, got 8"}},
      {"KeyLengthsCount",
       Attend([](auto& r) { r.mutable_mask()->add_key_lengths(3); }),
       kInvalid,
       {"mask.key_lengths: expected 2 entries", "got 1"}},
      {"KeyLengthOutOfRange",
       Attend([](auto& r) {
         r.mutable_mask()->add_key_lengths(3);
         r.mutable_mask()->add_key_lengths(10);
       }),
       kInvalid,
       {"mask.key_lengths[1]: expected 1..9", "got 10"}},
      {"KeepNotBroadcastable",
       Attend([](auto& r) {
         *r.mutable_mask()->mutable_keep() = Floats({4, 9}, pb::DTYPE_BOOL);
       }),
       kInvalid,
       {"mask.keep: shape [4, 9] does not broadcast", "[2, 4, 3, 9]"}},
      {"KeepDataLength",
       Attend([](auto& r) {
         *r.mutable_mask()->mutable_keep() = Floats({3, 9}, pb::DTYPE_BOOL);
         r.mutable_mask()->mutable_keep()->mutable_data()->append("x");
       }),
       kInvalid,
       {"mask.keep: data expected 27 bytes", "got 28"}},
      {"KeepRank5",
       Attend([](auto& r) {
         *r.mutable_mask()->mutable_keep() = Floats({1, 2, 4, 3, 9}, pb::DTYPE_BOOL);
       }),
       kInvalid,
       {"mask.keep: shape expected rank <= 4", "got [1, 2, 4, 3, 9]"}},
      {"OutputDtypeBool",
       Attend([](auto& r) { r.set_output_dtype(pb::DTYPE_BOOL); }),
       kInvalid,
       {"output_dtype: expected", "got DTYPE_BOOL"}},
      {"OutputDtypeUnknown",
       Attend([](auto& r) { r.set_output_dtype(static_cast<pb::DType>(42)); }),
       kInvalid,
       {"output_dtype: expected", "got 42"}},
      {"ScaleNaN",
       Attend([](auto& r) { r.set_scale(std::nanf("")); }),
       kInvalid,
       {"scale: expected a finite number", "got nan"}},
      {"TensorOverLimit",
       Attend([](auto& r) {
         r.mutable_query()->clear_shape();
         for (int64_t d : {64, 64, 64, 64}) r.mutable_query()->add_shape(d);
       }),
       StatusCode::RESOURCE_EXHAUSTED,
       {"query: shape [64, 64, 64, 64] has 16777216 elements", "limit of 4194304"}},
      {"ShapeOverflowsInt64",
       Attend([](auto& r) {
         r.mutable_query()->clear_shape();
         for (int64_t d : {int64_t{1} << 40, int64_t{1} << 40, int64_t{1}, int64_t{8}}) {
           r.mutable_query()->add_shape(d);
         }
       }),
       kInvalid,
       {"query: shape", "more elements than int64 holds"}},
      {"WeightsOverLimit",
       Attend([](auto& r) {
         *r.mutable_query() = Floats({1, 1, 2048, 1});
         *r.mutable_key() = Floats({1, 1, 4096, 1});
         *r.mutable_value() = Floats({1, 1, 4096, 1});
         r.set_return_weights(true);
       }),
       StatusCode::RESOURCE_EXHAUSTED,
       {"weights: shape [1, 1, 2048, 4096] has 8388608 elements"}},
      {"ForwardUnknownModule",
       Forward([](auto& r) { r.set_module("nope"); }),
       StatusCode::NOT_FOUND,
       {"module: no module named 'nope'", "demo-gqa"}},
      {"ForwardWrongDModel",
       Forward([](auto& r) {
         *r.mutable_query() = Floats({1, 4, 256});
       }),
       kInvalid,
       {"query: expected [B, L, d_model = 512]", "got [1, 4, 256]"}},
      {"ForwardKeyBatch",
       Forward([](auto& r) {
         *r.mutable_key() = Floats({2, 4, 512});
       }),
       kInvalid,
       {"key: dim 0 (B) expected 1", "got 2"}},
      {"ForwardMlaValueDiffers",
       Forward([](auto& r) {
         r.set_module("demo-mla");
         *r.mutable_key() = Floats({1, 4, 512});
         *r.mutable_value() = Floats({1, 4, 512});
         (*r.mutable_value()->mutable_data())[0] = 1;
       }),
       kInvalid,
       {"value: mla derives keys and values from one latent"}},
      {"ForwardBadKeyLengths",
       Forward([](auto& r) { r.mutable_mask()->add_key_lengths(5); }),
       kInvalid,
       {"mask.key_lengths[0]: expected 1..4", "got 5"}},
      {"LoadWithoutVariant",
       Load([](auto& r) { r.mutable_config()->clear_mha(); }),
       kInvalid,
       {"config.variant: expected one of self_attention, mha, gqa, mqa, mla, got none"}},
      {"LoadGqaHeads",
       Load([](auto& r) {
         r.mutable_config()->mutable_gqa()->set_num_q_heads(8);
         r.mutable_config()->mutable_gqa()->set_num_kv_heads(3);
       }),
       kInvalid,
       {"config.gqa.num_kv_heads: must divide num_q_heads = 8, got 3"}},
      {"LoadMissingWeight",
       Load([](auto& r) {
         auto w = MhaWeights(32);
         w.erase("W_o.weight");
         r.mutable_weights()->insert(w.begin(), w.end());
       }),
       kInvalid,
       {"weights: missing tensor 'W_o.weight' (expected shape [32, 32])"}},
      {"LoadMisShapedWeight",
       Load([](auto& r) {
         auto w = MhaWeights(32);
         w["W_q.weight"] = Floats({32, 31});
         r.mutable_weights()->insert(w.begin(), w.end());
       }),
       kInvalid,
       {"weights['W_q.weight']: expected shape [32, 32], got [32, 31]"}},
      {"LoadUnexpectedWeight",
       Load([](auto& r) {
         auto w = MhaWeights(32);
         w["rotary.inv_freq"] = Floats({4});
         r.mutable_weights()->insert(w.begin(), w.end());
       }),
       kInvalid,
       {"weights: unexpected tensor 'rotary.inv_freq'"}},
      {"LoadWeightDtypeBool",
       Load([](auto& r) {
         auto w = MhaWeights(32);
         w["W_q.weight"] = Floats({32, 32}, pb::DTYPE_BOOL);
         r.mutable_weights()->insert(w.begin(), w.end());
       }),
       kInvalid,
       {"weights['W_q.weight']: dtype expected", "got DTYPE_BOOL"}},
      {"LoadEmptyName",
       Load([](auto& r) { r.set_name(""); }),
       kInvalid,
       {"name: expected 1..256 bytes, got 0"}},
      {"LoadTakenName",
       Load([](auto& r) { r.set_name("demo-mha"); }),
       StatusCode::ALREADY_EXISTS,
       {"name: a module named 'demo-mha' is already loaded"}},
      {"LoadHugeModule",
       Load([](auto& r) {
         r.mutable_config()->set_d_model(8192);
         r.mutable_config()->mutable_mha()->set_num_heads(8);
       }),
       StatusCode::RESOURCE_EXHAUSTED,
       {"weights['W_q.weight']: shape [8192, 8192]"}},
      {"UnloadUnknown",
       [](pb::AttentionService::Stub& stub) {
         grpc::ClientContext ctx;
         pb::UnloadModuleRequest req;
         req.set_name("ghost");
         pb::UnloadModuleResponse resp;
         return stub.UnloadModule(&ctx, req, &resp);
       },
       StatusCode::NOT_FOUND,
       {"name: no module named 'ghost'"}},
      {"EstimateNegativeSeqLen",
       [](pb::AttentionService::Stub& stub) {
         grpc::ClientContext ctx;
         pb::EstimateRequest req;
         *req.mutable_config() = GoodLoad().config();
         req.set_seq_len(-1);
         pb::EstimateResponse resp;
         return stub.Estimate(&ctx, req, &resp);
       },
       kInvalid,
       {"seq_len: expected 0..", "got -1"}},
  };
}

class BadInputTest : public ServerTest {};

TEST_F(BadInputTest, EveryMalformedRequestGetsItsCodeAndAClearMessage) {
  const std::vector<BadRequest> table = Table();
  ASSERT_GE(table.size(), 20u);
  for (const BadRequest& c : table) {
    SCOPED_TRACE(c.name);
    const grpc::Status s = c.call(client_->stub());
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    for (const std::string& part : c.message_parts) {
      EXPECT_TRUE(absl::StrContains(s.error_message(), part))
          << "'" << s.error_message() << "' lacks '" << part << "'";
    }
  }
  // The server is unharmed: a correct request still gets a correct answer.
  const Tensor q = RandomTensor({2, 4, 3, 8}, 1), k = RandomTensor({2, 2, 9, 8}, 2),
               v = RandomTensor({2, 2, 9, 8}, 3);
  auto got = client_->Attend(q, k, v);
  ASSERT_OK(got);
  auto want = attention::Attend(q, k, v, {}, {});
  ASSERT_OK(want);
  EXPECT_LT(RelError(got->output, want->output), 1e-5);
  auto modules = client_->ListModules();
  ASSERT_OK(modules);
  EXPECT_EQ(modules->size(), 5u);  // no half-loaded module left behind
}

}  // namespace
}  // namespace attention

namespace attention {
namespace {

class SmallMessageServer : public ServerTest {
  void Customize(server::ServerOptions& options) override {
    options.service.max_message_bytes = 1 << 20;
  }
};

TEST_F(SmallMessageServer, OversizedMessageIsResourceExhaustedAndServerKeepsServing) {
  const Tensor big = RandomTensor({1, 1, 512, 1024}, 1);  // 2 MiB of float32
  auto r = client_->Attend(big, big, big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  const Tensor small = RandomTensor({1, 1, 4, 8}, 2);
  EXPECT_OK(client_->Attend(small, small, small));
}

}  // namespace
}  // namespace attention

namespace attention {
namespace {

namespace pb = ::attention::v1;

// --max_tensor_elements=0: no element limit, so only overflow checks stand
// between a tiny request and a huge allocation.
class UnlimitedServer : public ServerTest {
  void Customize(server::ServerOptions& options) override {
    options.service.max_tensor_elements = 0;
  }
};

TEST_F(UnlimitedServer, ShapesWhoseByteCountOverflowAreRefusedNotAllocated) {
  {  // [1, 1, 2^62 + 1, 1] float32 with 4 bytes of data: 4 · (2^62 + 1) wraps to 4.
    pb::AttendRequest r;
    *r.mutable_key() = Floats({1, 1, 4, 1});
    *r.mutable_value() = Floats({1, 1, 4, 1});
    pb::Tensor* q = r.mutable_query();
    q->set_dtype(pb::DTYPE_FLOAT32);
    q->clear_shape();
    for (int64_t d : {int64_t{1}, int64_t{1}, (int64_t{1} << 62) + 1, int64_t{1}}) q->add_shape(d);
    q->set_data(std::string(4, '\0'));
    grpc::ClientContext ctx;
    pb::AttendResponse resp;
    const grpc::Status s = client_->stub().Attend(&ctx, r, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_TRUE(absl::StartsWith(s.error_message(), "query")) << s.error_message();
  }
  {  // A Decode chunk [1, 2^55 + 1, 128] on demo-sa (d_model 128).
    auto stream = client_->StartDecode("demo-sa", 1);
    ASSERT_OK(stream);
    pb::DecodeRequest chunk;
    pb::Tensor* t = chunk.mutable_tokens();
    t->set_dtype(pb::DTYPE_FLOAT32);
    for (int64_t d : {int64_t{1}, (int64_t{1} << 55) + 1, int64_t{128}}) t->add_shape(d);
    t->set_data(std::string(512, '\0'));
    grpc::ClientContext ctx;
    auto s = client_->stub().Decode(&ctx);
    pb::DecodeRequest start;
    start.mutable_start()->set_module("demo-sa");
    start.mutable_start()->set_batch(1);
    ASSERT_TRUE(s->Write(start));
    ASSERT_TRUE(s->Write(chunk));
    pb::DecodeResponse resp;
    EXPECT_FALSE(s->Read(&resp));
    const grpc::Status st = s->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_TRUE(absl::StartsWith(st.error_message(), "tokens")) << st.error_message();
  }
  const Tensor x = RandomTensor({1, 1, 4, 8}, 1);
  EXPECT_OK(client_->Attend(x, x, x));  // still serving
}

class OneMegabyteMessages : public ServerTest {
  void Customize(server::ServerOptions& options) override {
    options.service.max_message_bytes = 1 << 20;
  }
};

TEST_F(OneMegabyteMessages, AResponseOverTheLimitIsRefusedBeforeComputing) {
  // 48 KiB of request; weights [1, 1, 512, 512] are 1 MiB of float32.
  const Tensor x = RandomTensor({1, 1, 512, 8}, 1);
  client::AttendOptions with_weights;
  with_weights.return_weights = true;
  auto r = client_->Attend(x, x, x, with_weights);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "--max_message_mb")) << r.status();
  // Forward likewise: 800 KiB in, weights [1, 8, 400, 400] are 5 MiB.
  pb::ForwardRequest f = GoodForward("demo-mha");
  *f.mutable_query() = Floats({1, 400, 512});
  f.set_return_weights(true);
  grpc::ClientContext ctx;
  pb::ForwardResponse resp;
  const grpc::Status s = client_->stub().Forward(&ctx, f, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "--max_message_mb")) << s.error_message();
  // Neither is counted OK; the server still answers what fits.
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  for (const pb::MethodStats& m : info->methods()) {
    if (m.method() == "Attend" || m.method() == "Forward") {
      EXPECT_EQ(m.codes().count("OK"), 0u) << m.method();
    }
  }
  EXPECT_OK(client_->Attend(x, x, x));
}

}  // namespace
}  // namespace attention
