// Integration: a real server on loopback, called through the real client.
// Every RPC, every variant, every mask kind, FP16/BF16 in and out, weights,
// self and cross attention; results equal to the core's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "core/module.h"
#include "core/safetensors.h"
#include "core/sdpa.h"
#include "tests/core/test_configs.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention {
namespace {

using client::AttendOptions;
using client::ForwardOptions;
namespace pb = ::attention::v1;

// Float32 results of the same code path: equal up to summation order.
constexpr double kF32Tolerance = 1e-5;

TEST_F(ServerTest, HealthIsServing) {
  auto status = client_->CheckHealth();
  ASSERT_OK(status);
  EXPECT_EQ(*status, 1);
  auto service = client_->CheckHealth("attention.v1.AttentionService");
  ASSERT_OK(service);
  EXPECT_EQ(*service, 1);
}

TEST_F(ServerTest, GetServerInfoDescribesTheServer) {
  auto info = client_->GetServerInfo();
  ASSERT_OK(info);
  EXPECT_EQ(info->onednn_version(), "2.6.3");
  EXPECT_FALSE(info->cpu_isa().empty());
  EXPECT_GE(info->threads(), 1);
  EXPECT_EQ(info->limits().max_tensor_elements(), int64_t{4} << 20);
  EXPECT_EQ(info->variants_size(), 5);
}

TEST_F(ServerTest, DemoModulesAreLoadedAndSorted) {
  auto modules = client_->ListModules();
  ASSERT_OK(modules);
  std::vector<std::string> names;
  for (const auto& m : *modules) names.push_back(m.name());
  EXPECT_EQ(names,
            (std::vector<std::string>{"demo-gqa", "demo-mha", "demo-mla", "demo-mqa", "demo-sa"}));
}

TEST_F(ServerTest, LoadListUnloadRoundTrip) {
  ModuleConfig c;
  c.variant = Variant::kGqa;
  c.d_model = 32;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  auto info = client_->LoadModule("mine", client::ConfigToProto(c), {}, 7);
  ASSERT_OK(info);
  EXPECT_EQ(info->parameter_count(), ParameterCount(c));
  EXPECT_EQ(info->kv_cache_bytes_per_token(), KvCacheBytesPerToken(c));
  EXPECT_EQ(info->config().gqa().num_kv_heads(), 2);
  auto again = client_->LoadModule("mine", client::ConfigToProto(c), {}, 7);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_OK(client_->LoadModule("mine", client::ConfigToProto(c), {}, 8, /*replace=*/true));
  EXPECT_EQ(client_->ListModules()->size(), 6u);
  ASSERT_OK(client_->UnloadModule("mine"));
  EXPECT_EQ(client_->ListModules()->size(), 5u);
  EXPECT_EQ(client_->UnloadModule("mine").code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, EstimateEqualsCoreCostModel) {
  const ModuleConfig c = Mla(5120, 128, 1536, 512, 128, 64, 128);
  auto e = client_->Estimate(client::ConfigToProto(c), 4, 4096);
  ASSERT_OK(e);
  auto want = EstimateCosts(c, 4, 4096);
  ASSERT_OK(want);
  EXPECT_EQ(e->parameters(), want->parameters);
  EXPECT_EQ(e->kv_cache_bytes_per_token(), 576 * 4);
  EXPECT_EQ(e->kv_cache_bytes(), 576 * 4 * 4 * 4096);
  EXPECT_DOUBLE_EQ(e->prefill_flops(), want->prefill_flops);
  EXPECT_DOUBLE_EQ(e->decode_flops_per_token(), want->decode_flops_per_token);
}

// ---------------------------------------------------------------- Attend

enum class Mask { kNone, kCausal, kKeyLengths, kKeep, kAll };

MaskSpec MakeMask(Mask kind, int64_t b, int64_t lq, int64_t lk) {
  MaskSpec m;
  if (kind == Mask::kCausal || kind == Mask::kAll) m.causal = true;
  if (kind == Mask::kKeyLengths || kind == Mask::kAll) {
    for (int64_t i = 0; i < b; ++i) m.key_lengths.push_back(1 + (i * 3) % lk);
  }
  if (kind == Mask::kKeep || kind == Mask::kAll) {
    m.keep_shape = {lq, lk};
    for (int64_t i = 0; i < lq * lk; ++i) m.keep.push_back((i * 7) % 5 != 0);
  }
  return m;
}

struct AttendCase {
  std::string name;
  int64_t hq, hkv;
  Mask mask;
  bool weights;
};

void PrintTo(const AttendCase& c, std::ostream* os) { *os << c.name; }

class ServerAttend : public ServerTest, public testing::WithParamInterface<AttendCase> {};

TEST_P(ServerAttend, EqualsTheCore) {
  const AttendCase& c = GetParam();
  const int64_t b = 2, lq = 5, lk = 9, dk = 16, dv = 12;
  const Tensor q = RandomTensor({b, c.hq, lq, dk}, 1);
  const Tensor k = RandomTensor({b, c.hkv, lk, dk}, 2);
  const Tensor v = RandomTensor({b, c.hkv, lk, dv}, 3);
  AttendOptions o;
  o.mask = MakeMask(c.mask, b, lq, lk);
  o.return_weights = c.weights;
  auto got = client_->Attend(q, k, v, o);
  ASSERT_OK(got);
  auto want = Attend(q, k, v, o.mask, {0.0f, c.weights});
  ASSERT_OK(want);
  EXPECT_EQ(got->variant, VariantName(c.hq, c.hkv));
  EXPECT_LT(RelError(got->output, want->output), kF32Tolerance);
  if (c.weights) {
    EXPECT_LT(RelError(got->weights, want->weights), kF32Tolerance);
  } else {
    EXPECT_TRUE(got->weights.empty());
  }
  EXPECT_EQ(got->output_dtype, pb::DTYPE_FLOAT32);
  EXPECT_GT(got->timing.flops, 0);
}

std::vector<AttendCase> AttendCases() {
  std::vector<AttendCase> cases;
  const std::pair<const char*, Mask> masks[] = {{"NoMask", Mask::kNone},
                                                {"Causal", Mask::kCausal},
                                                {"KeyLengths", Mask::kKeyLengths},
                                                {"Keep", Mask::kKeep},
                                                {"AllMasks", Mask::kAll}};
  const std::tuple<const char*, int64_t, int64_t> heads[] = {
      {"Mha", 4, 4}, {"Gqa", 6, 2}, {"Mqa", 4, 1}};
  for (const auto& [hname, hq, hkv] : heads) {
    for (const auto& [mname, m] : masks) {
      for (bool w : {false, true}) {
        cases.push_back({absl::StrCat(hname, "_", mname, w ? "_Weights" : ""), hq, hkv, m, w});
      }
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Variants, ServerAttend, testing::ValuesIn(AttendCases()),
                         [](const auto& p) { return p.param.name; });

// Rounds every element through a 16-bit dtype.
Tensor Rounded(const Tensor& t, DType dtype) {
  std::vector<uint16_t> bits(t.size());
  Tensor out(t.shape());
  if (dtype == DType::kFloat16) {
    FloatToHalf(t.data(), bits.data(), t.size());
    HalfToFloat(bits.data(), out.data(), t.size());
  } else {
    FloatToBfloat16(t.data(), bits.data(), t.size());
    Bfloat16ToFloat(bits.data(), out.data(), t.size());
  }
  return out;
}

TEST_F(ServerTest, HalfPrecisionInAndOut) {
  const Tensor q = RandomTensor({1, 4, 6, 8}, 1);
  const Tensor k = RandomTensor({1, 2, 6, 8}, 2);
  const Tensor v = RandomTensor({1, 2, 6, 8}, 3);
  for (DType dt : {DType::kFloat16, DType::kBfloat16}) {
    SCOPED_TRACE(DTypeName(dt));
    // The server computes in float32 on the rounded inputs.
    auto want = Attend(Rounded(q, dt), Rounded(k, dt), Rounded(v, dt), {}, {0.0f, true});
    ASSERT_OK(want);
    AttendOptions o;
    o.wire_dtype = dt;
    o.return_weights = true;
    auto same = client_->Attend(q, k, v, o);  // output dtype follows the query
    ASSERT_OK(same);
    EXPECT_EQ(same->output_dtype, dt == DType::kFloat16 ? pb::DTYPE_FLOAT16 : pb::DTYPE_BFLOAT16);
    EXPECT_LT(RelError(same->output, Rounded(want->output, dt)), 1e-6);
    EXPECT_LT(RelError(same->weights, Rounded(want->weights, dt)), 1e-6);
    o.output_dtype = pb::DTYPE_FLOAT32;  // 16-bit in, float32 out
    auto wide = client_->Attend(q, k, v, o);
    ASSERT_OK(wide);
    EXPECT_EQ(wide->output_dtype, pb::DTYPE_FLOAT32);
    EXPECT_LT(RelError(wide->output, want->output), kF32Tolerance);
  }
  AttendOptions narrow;  // float32 in, bfloat16 out
  narrow.output_dtype = pb::DTYPE_BFLOAT16;
  auto r = client_->Attend(q, k, v, narrow);
  ASSERT_OK(r);
  auto want = Attend(q, k, v, {}, {});
  EXPECT_LT(RelError(r->output, Rounded(want->output, DType::kBfloat16)), 1e-6);
}

// ---------------------------------------------------------------- Forward

struct ForwardCase {
  std::string name;
  ModuleConfig config;
  bool cross;
  Mask mask;
};

void PrintTo(const ForwardCase& c, std::ostream* os) { *os << c.name; }

ModuleConfig Config(Variant v) {
  ModuleConfig c;
  c.variant = v;
  c.d_model = 32;
  switch (v) {
    case Variant::kSelfAttention:
      c.d_k = 12;
      c.d_v = 20;
      break;
    case Variant::kMha:
    case Variant::kMqa:
      c.num_heads = 4;
      break;
    case Variant::kGqa:
      c.num_heads = 8;
      c.num_kv_heads = 2;
      break;
    case Variant::kMla:
      c.num_heads = 4;
      c.q_lora_rank = 24;
      c.kv_lora_rank = 16;
      c.qk_nope_head_dim = 8;
      c.qk_rope_head_dim = 4;
      c.v_head_dim = 6;
      break;
  }
  return c;
}

class ServerForward : public ServerTest, public testing::WithParamInterface<ForwardCase> {};

TEST_P(ServerForward, StateDictModuleEqualsTheCore) {
  const ForwardCase& c = GetParam();
  // Weights travel as a state_dict, as a PyTorch user would send them.
  WeightMap weights;
  uint32_t seed = 10;
  for (const WeightSpec& s : ExpectedWeights(c.config)) {
    weights.emplace(s.name, RandomTensor(s.shape, seed++));
  }
  auto info = client_->LoadModule("m", client::ConfigToProto(c.config), weights);
  ASSERT_OK(info);
  auto local = AttentionModule::Create(c.config, weights);
  ASSERT_OK(local);

  const int64_t b = 2, lq = 5, lk = c.cross ? 7 : 5;
  const Tensor x = RandomTensor({b, lq, 32}, 1);
  const Tensor mem = RandomTensor({b, lk, 32}, 2);
  const Tensor val = RandomTensor({b, lk, 32}, 3);
  ForwardOptions o;
  ForwardInput in;
  in.query = &x;
  if (c.cross) {
    o.key = &mem;
    in.key = &mem;
    if (c.config.variant != Variant::kMla) {
      o.value = &val;
      in.value = &val;
    }
  }
  o.mask = in.mask = MakeMask(c.mask, b, lq, lk);
  o.return_weights = in.return_weights = true;
  auto got = client_->Forward("m", x, o);
  ASSERT_OK(got);
  auto want = (*local)->Forward(in);
  ASSERT_OK(want);
  EXPECT_LT(RelError(got->output, want->output), kF32Tolerance);
  EXPECT_LT(RelError(got->weights, want->weights), kF32Tolerance);
  EXPECT_DOUBLE_EQ(got->timing.flops, want->flops);
}

std::vector<ForwardCase> ForwardCases() {
  std::vector<ForwardCase> cases;
  for (Variant v :
       {Variant::kSelfAttention, Variant::kMha, Variant::kGqa, Variant::kMqa, Variant::kMla}) {
    const std::string name = VariantFieldName(v);
    cases.push_back({name + "_Self_Causal", Config(v), false, Mask::kCausal});
    cases.push_back({name + "_Self_Keep", Config(v), false, Mask::kKeep});
    cases.push_back({name + "_Cross_KeyLengths", Config(v), true, Mask::kKeyLengths});
    cases.push_back({name + "_Cross_NoMask", Config(v), true, Mask::kNone});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Variants, ServerForward, testing::ValuesIn(ForwardCases()),
                         [](const auto& p) { return p.param.name; });

TEST_F(ServerTest, SeededModuleEqualsCoreInitAndHalfWire) {
  const ModuleConfig c = Config(Variant::kMla);
  ASSERT_OK(client_->LoadModule("seeded", client::ConfigToProto(c), {}, 99));
  auto local = AttentionModule::CreateRandom(c, 99);
  ASSERT_OK(local);
  const Tensor x = RandomTensor({1, 6, 32}, 4);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  auto want = (*local)->Forward(in);
  ASSERT_OK(want);
  ForwardOptions o;
  o.mask.causal = true;
  auto got = client_->Forward("seeded", x, o);
  ASSERT_OK(got);
  EXPECT_LT(RelError(got->output, want->output), kF32Tolerance);
  // FP16 on the wire both ways: within half precision of the float32 result.
  o.wire_dtype = DType::kFloat16;
  auto half = client_->Forward("seeded", x, o);
  ASSERT_OK(half);
  EXPECT_EQ(half->output_dtype, pb::DTYPE_FLOAT16);
  EXPECT_LT(RelError(half->output, want->output), 5e-3);
}

// compute_dtype BFLOAT16 over the wire: a module keeps it in its config and
// answers within 1e-2 of the float32 module of the same seed; Attend takes
// it per call; FLOAT16 is FAILED_PRECONDITION and BOOL INVALID_ARGUMENT,
// naming the field; the server goes on serving.
TEST_F(ServerTest, Bf16ComputeModulesAndAttend) {
  for (Variant v : {Variant::kGqa, Variant::kMla}) {
    SCOPED_TRACE(VariantFieldName(v));
    ModuleConfig c = Config(v);
    ASSERT_OK(client_->LoadModule("f32", client::ConfigToProto(c), {}, 7, /*replace=*/true));
    c.compute_dtype = DType::kBfloat16;
    auto info = client_->LoadModule("bf16", client::ConfigToProto(c), {}, 7, /*replace=*/true);
    ASSERT_OK(info);
    EXPECT_EQ(info->config().compute_dtype(), pb::DTYPE_BFLOAT16);
    const Tensor x = RandomTensor({2, 6, c.d_model}, 4);
    ForwardOptions o;
    o.mask.causal = true;
    auto want = client_->Forward("f32", x, o);
    auto got = client_->Forward("bf16", x, o);
    ASSERT_OK(want);
    ASSERT_OK(got);
    EXPECT_LT(RelError(got->output, want->output), 1e-2);
    EXPECT_GT(RelError(got->output, want->output), 1e-7);
  }

  const Tensor q = RandomTensor({1, 4, 5, 16}, 1), k = RandomTensor({1, 2, 9, 16}, 2),
               vv = RandomTensor({1, 2, 9, 16}, 3);
  client::AttendOptions ao;
  ao.mask.causal = true;
  auto f32 = client_->Attend(q, k, vv, ao);
  ao.compute_dtype = pb::DTYPE_BFLOAT16;
  auto bf16 = client_->Attend(q, k, vv, ao);
  ASSERT_OK(f32);
  ASSERT_OK(bf16);
  EXPECT_LT(RelError(bf16->output, f32->output), 1e-2);
  EXPECT_GT(RelError(bf16->output, f32->output), 1e-7);
  ao.compute_dtype = pb::DTYPE_INT8;
  auto bad = client_->Attend(q, k, vv, ao);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "compute_dtype")) << bad.status();

  pb::ModuleConfig half = client::ConfigToProto(Config(Variant::kMha));
  half.set_compute_dtype(pb::DTYPE_FLOAT16);
  auto refused = client_->LoadModule("half", half, {}, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_TRUE(absl::StartsWith(refused.status().message(), "config.compute_dtype"))
      << refused.status();
  half.set_compute_dtype(pb::DTYPE_BOOL);
  refused = client_->LoadModule("half", half, {}, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_TRUE(absl::StartsWith(refused.status().message(), "config.compute_dtype"))
      << refused.status();
  ASSERT_OK(client_->Attend(q, k, vv, {}));
}

TEST_F(ServerTest, DemoModulesAnswerForward) {
  for (const char* name : {"demo-sa", "demo-mha", "demo-gqa", "demo-mqa", "demo-mla"}) {
    SCOPED_TRACE(name);
    const int64_t d = std::string(name) == "demo-sa" ? 128 : 512;
    const Tensor x = RandomTensor({1, 8, d}, 5);
    ForwardOptions o;
    o.mask.causal = true;
    auto r = client_->Forward(name, x, o);
    ASSERT_OK(r);
    EXPECT_EQ(r->output.dim(1), 8);
    EXPECT_GT(r->timing.flops, 0);
  }
}

}  // namespace
}  // namespace attention

namespace attention {
namespace {

namespace pb = ::attention::v1;

class ModuleMemoryTest : public ServerTest {
 protected:
  void Customize(server::ServerOptions& options) override {
    options.service.module_memory_bytes = 32 << 20;
    options.service.max_tensor_elements = int64_t{64} << 20;
  }
  pb::ModuleConfig Mha(int64_t d_model) {
    pb::ModuleConfig c;
    c.set_d_model(d_model);
    c.mutable_mha()->set_num_heads(8);
    return c;
  }
};

TEST_F(ModuleMemoryTest, ModulesPastTheBudgetAreRefusedBeforeTheirWeightsExist) {
  auto before = client_->GetServerInfo();
  ASSERT_OK(before);
  EXPECT_EQ(before->limits().module_memory_bytes(), 32 << 20);
  const int64_t demos = before->load().module_memory_bytes();
  EXPECT_GT(demos, 0);  // the demo modules' weights
  // d_model 8192: 1 GiB of weights from a 15-byte request.
  auto huge = client_->LoadModule("huge", Mha(8192));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  EXPECT_TRUE(absl::StrContains(huge.status().message(), "--module_memory_mb")) << huge.status();
  // d_model 1024 (16 MiB) fits; a second one does not, a replace does.
  ASSERT_OK(client_->LoadModule("m1", Mha(1024)));
  auto second = client_->LoadModule("m2", Mha(1024));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  ASSERT_OK(client_->LoadModule("m1", Mha(1024), {}, 7, /*replace=*/true));
  auto loaded = client_->GetServerInfo();
  ASSERT_OK(loaded);
  EXPECT_EQ(loaded->load().module_memory_bytes(), demos + (int64_t{16} << 20) + 4 * 4 * 1024);
  ASSERT_OK(client_->UnloadModule("m1"));
  ASSERT_OK(client_->LoadModule("m2", Mha(1024)));  // room again
  auto after = client_->GetServerInfo();
  ASSERT_OK(after);
  EXPECT_EQ(after->load().reserved_memory_bytes(), 0);
}

// bf16 compute holds the matrices in 2 bytes: the budget counts 8 MiB for
// a d_model 1024 module, and a second one fits in bf16 where the float32
// one (16 MiB) does not.
TEST_F(ModuleMemoryTest, Bf16ModulesTakeHalfTheBudget) {
  auto before = client_->GetServerInfo();
  ASSERT_OK(before);
  pb::ModuleConfig bf16 = Mha(1024);
  bf16.set_compute_dtype(pb::DTYPE_BFLOAT16);
  ASSERT_OK(client_->LoadModule("m1", bf16));
  auto after = client_->GetServerInfo();
  ASSERT_OK(after);
  EXPECT_EQ(after->load().module_memory_bytes() - before->load().module_memory_bytes(),
            (int64_t{8} << 20) + 4 * 4 * 1024);
  EXPECT_EQ(client_->LoadModule("m2", Mha(1024)).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_OK(client_->LoadModule("m2", bf16));
}

}  // namespace
}  // namespace attention

namespace attention {
namespace {

// softmax(q kᵀ / sqrt(Dk)) v for one head, in double: [Lq, Dk], [Lk, Dk],
// [Lk, Dv] -> [Lq, Dv].
std::vector<double> NaiveHead(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t lq = q.dim(2), lk = k.dim(2), dk = q.dim(3), dv = v.dim(3);
  std::vector<double> out(static_cast<size_t>(lq * dv), 0.0), s(static_cast<size_t>(lk));
  for (int64_t i = 0; i < lq; ++i) {
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < lk; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < dk; ++d) dot += double{q.data()[i * dk + d]} * k.data()[j * dk + d];
      s[j] = dot / std::sqrt(static_cast<double>(dk));
      max = std::max(max, s[j]);
    }
    for (int64_t j = 0; j < lk; ++j) sum += s[j] = std::exp(s[j] - max);
    for (int64_t j = 0; j < lk; ++j) {
      for (int64_t d = 0; d < dv; ++d) out[i * dv + d] += s[j] / sum * v.data()[j * dv + d];
    }
  }
  return out;
}

TEST_F(ServerTest, NarrowHeadsOverLongKeysAreAnsweredNotInternal) {
  // Dk 4, Dv 1 over 4097 keys once came back INTERNAL from oneDNN's sgemm.
  for (const auto& [dk, dv] :
       std::vector<std::pair<int64_t, int64_t>>{{4, 1}, {1, 1}, {3, 5}, {5, 2}, {2, 3}}) {
    SCOPED_TRACE(absl::StrCat("Dk ", dk, ", Dv ", dv));
    const Tensor q = RandomTensor({1, 1, 32, dk}, 1), k = RandomTensor({1, 1, 4097, dk}, 2),
                 v = RandomTensor({1, 1, 4097, dv}, 3);
    auto got = client_->Attend(q, k, v);
    ASSERT_OK(got);
    const std::vector<double> want = NaiveHead(q, k, v);
    double err = 0, ref = 1e-30;
    for (size_t i = 0; i < want.size(); ++i) {
      err = std::max(err, std::abs(got->output.data()[i] - want[i]));
      ref = std::max(ref, std::abs(want[i]));
    }
    EXPECT_LT(err / ref, 1e-4);
  }
}

TEST_F(ServerTest, NonFiniteInputsGiveNanRowsNotFiniteAnswers) {
  const Tensor k = RandomTensor({1, 1, 9, 8}, 2), v = RandomTensor({1, 1, 9, 8}, 3);
  Tensor q = RandomTensor({1, 1, 3, 8}, 1);
  q.data()[8] = NAN;  // query row 1
  auto got = client_->Attend(q, k, v);
  ASSERT_OK(got);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t d = 0; d < 8; ++d) {
      const float x = got->output.data()[i * 8 + d];
      EXPECT_EQ(std::isnan(x), i == 1) << "row " << i << " dim " << d << ": " << x;
    }
  }
  Tensor k_inf = k, q_pos = RandomTensor({1, 1, 3, 8}, 4);
  k_inf.data()[0] = INFINITY;  // key 0 scores +Inf in every row: softmax is Inf/Inf
  for (int64_t i = 0; i < 3; ++i) q_pos.data()[i * 8] = 0.5f + std::abs(q_pos.data()[i * 8]);
  auto inf = client_->Attend(q_pos, k_inf, v);
  ASSERT_OK(inf);
  for (float x : inf->output.values()) EXPECT_TRUE(std::isnan(x)) << x;
}

// A layer with rotary embeddings through the server: its config round-trips
// and Forward at a position offset equals the core's.
TEST_F(ServerTest, RopeLayerAtAnOffsetEqualsTheCore) {
  ModuleConfig config = Config(Variant::kGqa);
  config.rope.style = RopeStyle::kNeox;
  config.rope.theta = 1e6;
  config.rope.rotary_dim = 4;
  config.qk_norm = true;  // Qwen3-style, no o_proj bias as Qwen2
  config.output_bias = false;
  auto local = AttentionModule::CreateRandom(config, 5);
  ASSERT_OK(local);
  auto info = client_->LoadModule("rope", client::ConfigToProto(config), (*local)->weights());
  ASSERT_OK(info);
  EXPECT_EQ(info->config().rope().style(), pb::ROPE_NEOX);
  EXPECT_EQ(info->config().rope().rotary_dim(), 4);
  EXPECT_TRUE(info->config().qk_norm());
  EXPECT_TRUE(info->config().has_output_bias());
  EXPECT_EQ(info->parameter_count(), (*local)->parameter_count());
  const Tensor x = RandomTensor({2, 6, 32}, 1);
  ForwardOptions o;
  o.mask.causal = true;
  o.position_offset = 100;
  auto got = client_->Forward("rope", x, o);
  ASSERT_OK(got);
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  in.position_offset = 100;
  auto want = (*local)->Forward(in);
  ASSERT_OK(want);
  EXPECT_LT(RelError(got->output, want->output), kF32Tolerance);
  o.position_offset = -1;
  auto bad = client_->Forward("rope", x, o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "position_offset")) << bad.status();
  pb::ModuleConfig mla = client::ConfigToProto(Config(Variant::kMla));
  mla.mutable_rope()->set_style(pb::ROPE_NEOX);
  auto refused = client_->LoadModule("mla-rope", mla);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "config.rope")) << refused.status();
}

// Checkpoints under --model_dir: a GQA layer with Hugging Face names inside
// a whole model's file, picked by weights_prefix, computes as the same
// weights sent as a state_dict; paths out of the directory are refused.
class ModelDirTest : public ServerTest {
 protected:
  void Customize(server::ServerOptions& options) override {
    dir_ = testing::TempDir() + "/models-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/sub");
    options.service.model_dir = dir_;
  }
  void TearDown() override {
    ServerTest::TearDown();
    std::filesystem::remove_all(dir_);
  }
  void Write(const std::string& path, const TensorMap& tensors) {
    std::ofstream out(path, std::ios::binary);
    out << SafetensorsImage(tensors);
  }
  pb::LoadModuleRequest FileRequest(const std::string& name, const std::string& file) {
    pb::LoadModuleRequest req;
    req.set_name(name);
    *req.mutable_config() = client::ConfigToProto(Config(Variant::kGqa));
    req.set_file(file);
    req.set_weights_prefix("model.layers.3.self_attn.");
    return req;
  }
  // Two modules give the same causal Forward of x, exactly.
  void ExpectSameForward(const std::string& m1, const std::string& m2, const Tensor& x) {
    ForwardOptions o;
    o.mask.causal = true;
    auto a = client_->Forward(m1, x, o);
    auto b = client_->Forward(m2, x, o);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(a->output.values(), b->output.values());
  }
  std::string dir_;
};

TEST_F(ModelDirTest, ALayerOfAHuggingFaceFileEqualsItsStateDict) {
  const ModuleConfig config = Config(Variant::kGqa);
  WeightMap weights;
  TensorMap file;
  uint32_t seed = 30;
  for (const WeightSpec& s : ExpectedWeights(config)) {
    Tensor t = RandomTensor(s.shape, seed++);
    std::string hf = s.name;  // W_q.weight -> q_proj.weight
    for (const char* p : {"q", "k", "v", "o"}) {
      const std::string ours = std::string("W_") + p;
      if (hf.rfind(ours + ".", 0) == 0) hf = std::string(p) + "_proj" + hf.substr(ours.size());
    }
    file.emplace("model.layers.3.self_attn." + hf, t);
    file.emplace("model.layers.4.self_attn." + hf, RandomTensor(s.shape, seed + 100));
    weights.emplace(s.name, std::move(t));
  }
  file.emplace("model.embed_tokens.weight", RandomTensor({10, 32}, 99));
  Write(dir_ + "/sub/model.safetensors", file);

  ASSERT_OK(client_->LoadModule(FileRequest("from-file", "sub/model.safetensors")));
  ASSERT_OK(client_->LoadModule("from-dict", client::ConfigToProto(config), weights));
  ExpectSameForward("from-file", "from-dict", RandomTensor({2, 5, 32}, 1));

  // A prefix that takes more than one layer is refused before reading.
  pb::LoadModuleRequest two = FileRequest("two", "sub/model.safetensors");
  two.set_weights_prefix("model.layers.");
  auto wide = client_->LoadModule(two);
  EXPECT_EQ(wide.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(wide.status().message(), "more than the layer needs"))
      << wide.status();
  // The prefix of a layer that is not there names the field.
  pb::LoadModuleRequest missing = FileRequest("none", "sub/model.safetensors");
  missing.set_weights_prefix("model.layers.9.");
  auto none = client_->LoadModule(missing);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(none.status().message(), "weights_prefix")) << none.status();
}

// A DeepSeek-V2 MLA layer keeps its own names (q_proj is not W_q there).
TEST_F(ModelDirTest, ADeepSeekLatentLayerLoadsFromItsOwnNames) {
  const ModuleConfig config = Config(Variant::kMla);
  WeightMap weights;
  TensorMap file;
  uint32_t seed = 60;
  for (const WeightSpec& s : ExpectedWeights(config)) {
    Tensor t = RandomTensor(s.shape, seed++);
    file.emplace("model.layers.3.self_attn." + s.name, t);
    weights.emplace(s.name, std::move(t));
  }
  Write(dir_ + "/deepseek.safetensors", file);
  pb::LoadModuleRequest req = FileRequest("mla-file", "deepseek.safetensors");
  *req.mutable_config() = client::ConfigToProto(config);
  ASSERT_OK(client_->LoadModule(req));
  ASSERT_OK(client_->LoadModule("mla-dict", client::ConfigToProto(config), weights));
  ExpectSameForward("mla-file", "mla-dict", RandomTensor({1, 4, 32}, 2));
}

TEST_F(ModelDirTest, PathsOutOfTheDirectoryAreRefused) {
  Write(dir_ + "/../outside.safetensors", {{"x", Tensor({1})}});
  std::filesystem::create_symlink(dir_ + "/../outside.safetensors", dir_ + "/link.safetensors");
  const struct {
    std::string file;
    absl::StatusCode code;
    const char* says;
  } cases[] = {
      {"/etc/passwd", absl::StatusCode::kPermissionDenied, "is absolute"},
      {"../outside.safetensors", absl::StatusCode::kPermissionDenied, "'..'"},
      {"sub/../../outside.safetensors", absl::StatusCode::kPermissionDenied, "'..'"},
      {"link.safetensors", absl::StatusCode::kPermissionDenied, "leads out of --model_dir"},
      {"sub/absent.safetensors", absl::StatusCode::kNotFound, "not found"},
      {"sub", absl::StatusCode::kInvalidArgument, "not a regular file"},
      {".", absl::StatusCode::kInvalidArgument, "not a regular file"},
      {std::string("a\0b", 3), absl::StatusCode::kInvalidArgument, "NUL"},
  };
  for (const auto& c : cases) {
    auto r = client_->LoadModule(FileRequest("m", c.file));
    ASSERT_FALSE(r.ok()) << c.file;
    EXPECT_EQ(r.status().code(), c.code) << c.file << ": " << r.status();
    EXPECT_TRUE(absl::StartsWith(r.status().message(), "file: ")) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), c.says)) << r.status();
  }
  // Both a file and weights.
  pb::LoadModuleRequest both = FileRequest("m", "sub/model.safetensors");
  client::TensorToProto(Tensor({1}), DType::kFloat32, &(*both.mutable_weights())["W_q.weight"]);
  EXPECT_EQ(client_->LoadModule(both).status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove(dir_ + "/../outside.safetensors");
  // The server still serves.
  EXPECT_OK(client_->ListModules());
}

TEST_F(ServerTest, AServerWithoutAModelDirReadsNoFiles) {
  pb::LoadModuleRequest req;
  req.set_name("m");
  *req.mutable_config() = client::ConfigToProto(Config(Variant::kGqa));
  req.set_file("model.safetensors");
  auto r = client_->LoadModule(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "--model_dir")) << r.status();
}

}  // namespace
}  // namespace attention
