// The Decode stream through the real client: chunks equal one causal
// Forward; caches are freed however a stream ends; the KV budget is shared.
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/match.h"
#include "core/module.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;

class DecodeTest : public ServerTest {
 protected:
  void Customize(server::ServerOptions& options) override {
    // 64 blocks of 16 KiB: 1 MiB of KV budget.
    options.service.kv_cache_bytes = 1 << 20;
    options.service.kv_block_bytes = 16 << 10;
  }
  int64_t BlocksUsed() {
    auto info = client_->GetServerInfo();
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->kv_cache().blocks_used() : -1;
  }
  // Blocks come back when the server has seen the stream end: poll briefly.
  bool WaitForBlocks(int64_t want) {
    for (int i = 0; i < 400 * static_cast<int>(kSlowdown); ++i) {
      if (BlocksUsed() == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
};

class DecodeEveryDemo : public DecodeTest, public testing::WithParamInterface<const char*> {};

TEST_P(DecodeEveryDemo, ChunksEqualOneCausalForward) {
  const std::string module = GetParam();
  auto modules = client_->ListModules();
  ASSERT_OK(modules);
  int64_t d_model = 0, per_token = 0;
  for (const auto& m : *modules) {
    if (m.name() == module) {
      d_model = m.config().d_model();
      per_token = m.kv_cache_bytes_per_token();
    }
  }
  const Tensor x = RandomTensor({2, 11, d_model}, 3);
  client::ForwardOptions fo;
  fo.mask.causal = true;
  auto full = client_->Forward(module, x, fo);
  ASSERT_OK(full);

  auto stream = client_->StartDecode(module, 2);
  ASSERT_OK(stream);
  int64_t t0 = 0;
  for (int64_t n : {5, 1, 1, 3, 1}) {
    auto chunk = (*stream)->Step(Slice(x, t0, n));
    ASSERT_OK(chunk);
    EXPECT_LT(RelError(chunk->output, Slice(full->output, t0, n)), 1e-4) << "chunk at " << t0;
    t0 += n;
    EXPECT_EQ(chunk->cached_tokens, t0);
    EXPECT_EQ(chunk->kv_cache_bytes, t0 * 2 * per_token);
    EXPECT_GT(chunk->timing.flops, 0);
  }
  EXPECT_GT(BlocksUsed(), 0);
  ASSERT_OK((*stream)->Close());
  EXPECT_TRUE(WaitForBlocks(0));
}

INSTANTIATE_TEST_SUITE_P(Demos, DecodeEveryDemo,
                         testing::Values("demo-sa", "demo-mha", "demo-gqa", "demo-mqa", "demo-mla"),
                         [](const auto& p) {
                           std::string n = p.param;
                           return n.substr(5);
                         });

TEST_F(DecodeTest, CancelledAndAbandonedStreamsReturnTheirBlocks) {
  const Tensor x = RandomTensor({1, 40, 512}, 1);
  {
    auto cancelled = client_->StartDecode("demo-mha", 1);
    ASSERT_OK(cancelled);
    ASSERT_OK((*cancelled)->Step(x));
    EXPECT_GT(BlocksUsed(), 0);
    (*cancelled)->Cancel();
    EXPECT_TRUE(WaitForBlocks(0));
  }
  {
    // Abandoned: the client object goes away mid-stream without closing.
    auto abandoned = client_->StartDecode("demo-gqa", 1);
    ASSERT_OK(abandoned);
    ASSERT_OK((*abandoned)->Step(x));
    EXPECT_GT(BlocksUsed(), 0);
  }
  EXPECT_TRUE(WaitForBlocks(0));
  {
    // A stream that fails (bad chunk) frees its cache too.
    auto failing = client_->StartDecode("demo-gqa", 1);
    ASSERT_OK(failing);
    ASSERT_OK((*failing)->Step(x));
    auto bad = (*failing)->Step(RandomTensor({1, 2, 64}, 2));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
    EXPECT_TRUE(absl::StartsWith(bad.status().message(), "tokens: expected [B = 1"))
        << bad.status();
  }
  EXPECT_TRUE(WaitForBlocks(0));
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  EXPECT_EQ(info->kv_cache().streams(), 0);
}

TEST_F(DecodeTest, ExpiredDeadlineEndsTheStreamAndFreesItsCache) {
  client::ClientOptions options;
  options.timeout = absl::Milliseconds(300 * kSlowdown);
  auto short_lived = client::AttentionClient::Connect(address(), options);
  ASSERT_OK(short_lived);
  auto stream = (*short_lived)->StartDecode("demo-gqa", 1);
  ASSERT_OK(stream);
  ASSERT_OK((*stream)->Step(RandomTensor({1, 16, 512}, 1)));
  EXPECT_GT(BlocksUsed(), 0);
  // Past the deadline.
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(400 * kSlowdown)));
  auto late = (*stream)->Step(RandomTensor({1, 1, 512}, 2));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_TRUE(WaitForBlocks(0));
}

TEST_F(DecodeTest, OverBudgetStreamFailsWhileAnotherSucceeds) {
  // demo-mha caches 4 KiB per token: 4 tokens per 16 KiB block, 256 tokens
  // in the whole 1 MiB budget.
  auto small = client_->StartDecode("demo-mha", 1);
  ASSERT_OK(small);
  ASSERT_OK((*small)->Step(RandomTensor({1, 8, 512}, 1)));
  auto greedy = client_->StartDecode("demo-mha", 1);
  ASSERT_OK(greedy);
  auto refused = (*greedy)->Step(RandomTensor({1, 300, 512}, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "kv cache")) << refused.status();
  // The other stream is undisturbed and keeps decoding.
  auto next = (*small)->Step(RandomTensor({1, 1, 512}, 3));
  ASSERT_OK(next);
  EXPECT_EQ(next->cached_tokens, 9);
  ASSERT_OK((*small)->Close());
  EXPECT_TRUE(WaitForBlocks(0));
}

TEST_F(DecodeTest, ProtocolErrors) {
  pb::DecodeRequest tokens_first;
  auto* t = tokens_first.mutable_tokens();
  t->set_dtype(pb::DTYPE_FLOAT32);
  for (int64_t d : {1, 1, 512}) t->add_shape(d);
  t->set_data(std::string(512 * 4, '\0'));
  {
    grpc::ClientContext ctx;
    auto s = client_->stub().Decode(&ctx);
    ASSERT_TRUE(s->Write(tokens_first));
    pb::DecodeResponse resp;
    EXPECT_FALSE(s->Read(&resp));
    const grpc::Status st = s->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_TRUE(absl::StartsWith(st.error_message(), "tokens: sent before start"));
  }
  {
    auto unknown = client_->StartDecode("no-such-module", 1);
    ASSERT_OK(unknown);  // the start is only answered by the first read
    auto r = (*unknown)->Step(RandomTensor({1, 1, 512}, 1));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  }
  {
    auto capped = client_->StartDecode("demo-gqa", 1, /*max_tokens=*/4);
    ASSERT_OK(capped);
    ASSERT_OK((*capped)->Step(RandomTensor({1, 3, 512}, 1)));
    auto past = (*capped)->Step(RandomTensor({1, 2, 512}, 2));
    EXPECT_EQ(past.status().code(), absl::StatusCode::kFailedPrecondition) << past.status();
    EXPECT_TRUE(absl::StrContains(past.status().message(), "max_tokens = 4")) << past.status();
  }
  {
    auto zero = client_->StartDecode("demo-gqa", 0);
    ASSERT_OK(zero);
    auto r = (*zero)->Step(RandomTensor({1, 1, 512}, 1));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_TRUE(absl::StartsWith(r.status().message(), "start.batch")) << r.status();
  }
  EXPECT_TRUE(WaitForBlocks(0));
}

}  // namespace
}  // namespace attention

namespace attention {
namespace {

namespace pb = ::attention::v1;

// The status a stream ends with after `start` alone (start is answered by
// the first read).
absl::Status StartOnly(client::AttentionClient& client, const pb::DecodeStart& start) {
  grpc::ClientContext ctx;
  client.PrepareContext(&ctx);
  auto s = client.stub().Decode(&ctx);
  pb::DecodeRequest req;
  *req.mutable_start() = start;
  s->Write(req);
  s->WritesDone();
  pb::DecodeResponse resp;
  while (s->Read(&resp)) {
  }
  return client::FromGrpc(s->Finish());
}

TEST_F(DecodeTest, AnAbsurdBatchIsRefusedAtStart) {
  pb::DecodeStart start;
  start.set_module("demo-mha");
  start.set_batch(int64_t{1} << 20);
  for (int i = 0; i < 6; ++i) {
    const absl::Status s = StartOnly(*client_, start);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "--kv_cache_mb")) << s;
  }
  EXPECT_TRUE(WaitForBlocks(0));
}

TEST_F(DecodeTest, MaxTokensAreReservedAtStart) {
  // demo-mha: 4 KiB per token; 2000 tokens need 8 MiB of a 1 MiB budget.
  pb::DecodeStart start;
  start.set_module("demo-mha");
  start.set_batch(1);
  start.set_max_tokens(2000);
  const absl::Status refused = StartOnly(*client_, start);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "--kv_cache_mb")) << refused;
  // 128 tokens (512 KiB) fit; another stream then takes the rest of the
  // budget, and the first still reaches its max_tokens.
  auto reserved = client_->StartDecode("demo-mha", 1, /*max_tokens=*/128);
  ASSERT_OK(reserved);
  ASSERT_OK((*reserved)->Step(RandomTensor({1, 1, 512}, 1)));
  auto greedy = client_->StartDecode("demo-mha", 1);
  ASSERT_OK(greedy);
  ASSERT_OK((*greedy)->Step(RandomTensor({1, 64, 512}, 2)));
  auto refused_greedy = (*greedy)->Step(RandomTensor({1, 128, 512}, 3));
  EXPECT_EQ(refused_greedy.status().code(), absl::StatusCode::kResourceExhausted);
  for (int i = 0; i < 127; i += 9) {
    auto r = (*reserved)->Step(RandomTensor({1, std::min(9, 127 - i), 512}, 4 + i));
    ASSERT_OK(r);
  }
  ASSERT_OK((*reserved)->Close());
  EXPECT_TRUE(WaitForBlocks(0));
}

TEST_F(DecodeTest, AnUnboundedStreamHoldsTheBlocksOfItsBytes) {
  // demo-mha: 8 heads, 4 KiB per token; 16 KiB blocks hold 4 tokens.
  auto stream = client_->StartDecode("demo-mha", 1);  // max_tokens 0: no limit
  ASSERT_OK(stream);
  ASSERT_OK((*stream)->Step(RandomTensor({1, 1, 512}, 1)));
  EXPECT_EQ(BlocksUsed(), 1);  // not one per head
  ASSERT_OK((*stream)->Step(RandomTensor({1, 99, 512}, 2)));
  EXPECT_EQ(BlocksUsed(), 25);  // 100 tokens, 400 KiB
  for (int i = 0; i < 3; ++i) ASSERT_OK((*stream)->Step(RandomTensor({1, 1, 512}, 3 + i)));
  EXPECT_EQ(BlocksUsed(), 26);
  ASSERT_OK((*stream)->Close());
  EXPECT_TRUE(WaitForBlocks(0));
}

TEST_F(DecodeTest, AHeadTokenLargerThanABlockIsRefusedAtStartNamingTheFlag) {
  // Self-attention with d_k = d_v = 2080: 16.25 KiB per token, blocks of 16.
  ModuleConfig c;
  c.variant = Variant::kSelfAttention;
  c.d_model = 32;
  c.d_k = c.d_v = 2080;
  ASSERT_OK(client_->LoadModule("wide-head", client::ConfigToProto(c), {}, 1));
  auto stream = client_->StartDecode("wide-head", 1);
  absl::Status s =
      stream.ok() ? (*stream)->Step(RandomTensor({1, 1, 32}, 1)).status() : stream.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "--kv_block_kb")) << s;
  auto other = client_->StartDecode("demo-mha", 1);  // the server goes on
  ASSERT_OK(other);
  ASSERT_OK((*other)->Step(RandomTensor({1, 1, 512}, 2)));
  ASSERT_OK((*other)->Close());
}

TEST_F(DecodeTest, CacheDtypesFromTheModuleOrTheStream) {
  // demo-gqa with an int8 cache: 2 kv heads × (64 + 64 + 8) bytes per token.
  ModuleConfig c;
  c.variant = Variant::kGqa;
  c.d_model = 512;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.kv_cache_dtype = DType::kInt8;
  auto info = client_->LoadModule("gqa-int8", client::ConfigToProto(c), {}, 2);
  ASSERT_OK(info);
  EXPECT_EQ(info->kv_cache_bytes_per_token(), 272);
  EXPECT_EQ(info->config().kv_cache_dtype(), pb::DTYPE_INT8);
  auto estimate = client_->Estimate(client::ConfigToProto(c), 1, 100);
  ASSERT_OK(estimate);
  EXPECT_EQ(estimate->kv_cache_bytes(), 27200);

  const Tensor x = RandomTensor({1, 20, 512}, 4);
  auto f32 = client_->StartDecode("gqa-int8", 1, 0, pb::DTYPE_FLOAT32);
  auto int8 = client_->StartDecode("gqa-int8", 1);
  auto bf16 = client_->StartDecode("gqa-int8", 1, 0, pb::DTYPE_BFLOAT16);
  ASSERT_OK(f32);
  ASSERT_OK(int8);
  ASSERT_OK(bf16);
  auto a = (*f32)->Step(x);
  auto b = (*int8)->Step(x);
  auto h = (*bf16)->Step(x);
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK(h);
  EXPECT_EQ(a->kv_cache_bytes, 20 * 1024);
  EXPECT_EQ(b->kv_cache_bytes, 20 * 272);
  EXPECT_EQ(h->kv_cache_bytes, 20 * 512);
  EXPECT_LT(RelError(b->output, a->output), 2e-2);
  EXPECT_LT(RelError(h->output, a->output), 1e-2);
  for (auto* s : {&*f32, &*int8, &*bf16}) ASSERT_OK((*s)->Close());

  // A cache dtype that is none: INVALID_ARGUMENT naming the field.
  auto bad = client_->StartDecode("gqa-int8", 1, 0, pb::DTYPE_BOOL);
  absl::Status s = bad.ok() ? (*bad)->Step(x).status() : bad.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StartsWith(s.message(), "start.kv_cache_dtype")) << s;
  pb::ModuleConfig bool_cache = client::ConfigToProto(c);
  bool_cache.set_kv_cache_dtype(pb::DTYPE_BOOL);
  auto refused = client_->LoadModule("gqa-bool", bool_cache, {}, 2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "config.kv_cache_dtype"))
      << refused.status();
  EXPECT_TRUE(WaitForBlocks(0));
}

}  // namespace
}  // namespace attention
