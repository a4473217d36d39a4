// libFuzzer target over what a client controls: the bytes of a request. The
// first byte picks the message (Attend, Forward, LoadModule, Decode tokens,
// Estimate); the rest is parsed as that protobuf and pushed through the
// server's validation and tensor decoding, and — when small enough — through
// the core's computation. Any crash, sanitizer report or non-OK status
// other than a clean error is a finding.
//
//   ATTN_FUZZ_WRITE_SEEDS=DIR request_fuzzer   writes the seed corpus
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "attention/v1/attention.pb.h"
#include "core/module.h"
#include "core/sdpa.h"
#include "wire/convert.h"

namespace attention {
namespace {

namespace pb = ::attention::v1;
using wire::TensorSpec;

constexpr int64_t kLimit = int64_t{1} << 16;  // elements: keeps each run fast

void FuzzAttend(const pb::AttendRequest& r) {
  auto q = wire::TensorFromProto(r.query(), "query", {4, "[B, Hq, Lq, Dk]"}, kLimit);
  auto k = wire::TensorFromProto(r.key(), "key", {4, "[B, Hkv, Lk, Dk]"}, kLimit);
  auto v = wire::TensorFromProto(r.value(), "value", {4, "[B, Hkv, Lk, Dv]"}, kLimit);
  auto mask = wire::MaskFromProto(r.mask(), "mask", kLimit);
  (void)wire::ResolveOutputDType(r.output_dtype(), r.query().dtype(), "output_dtype");
  if (!q.ok() || !k.ok() || !v.ok() || !mask.ok()) return;
  if (!ValidateSdpa(View4::Of(*q), View4::Of(*k), View4::Of(*v), *mask).ok()) return;
  const double work = static_cast<double>(q->size()) * static_cast<double>(k->dim(2));
  if (work > 4e6 || !std::isfinite(r.scale())) return;
  auto out = Attend(*q, *k, *v, *mask, {r.scale(), r.return_weights()});
  if (!out.ok()) std::abort();  // validated input must compute
}

void FuzzModule(const pb::ModuleConfig& c, const pb::Tensor& x, const pb::Mask& m) {
  auto config = wire::ConfigFromProto(c);
  if (!config.ok()) return;
  (void)EstimateCosts(*config, 1, 16);
  if (ParameterCount(*config) > kLimit) return;
  auto module = AttentionModule::CreateRandom(*config, 1);
  if (!module.ok()) std::abort();
  auto input = wire::TensorFromProto(x, "query", {3, "[B, L, d_model]"}, kLimit);
  auto mask = wire::MaskFromProto(m, "mask", kLimit);
  if (!input.ok() || !mask.ok()) return;
  ForwardInput in;
  in.query = &*input;
  in.mask = *mask;
  (void)(*module)->Forward(in);  // errors are fine; crashes are not
}

void FuzzLoad(const pb::LoadModuleRequest& r) {
  auto config = wire::ConfigFromProto(r.config());
  WeightMap weights;
  for (const auto& [name, t] : r.weights()) {
    auto w = wire::TensorFromProto(t, "weights['" + name + "']", {}, kLimit);
    if (!w.ok()) return;
    weights.emplace(name, *std::move(w));
  }
  if (!config.ok() || ParameterCount(*config) > kLimit) return;
  (void)AttentionModule::Create(*config, std::move(weights));
}

void WriteSeeds(const std::string& dir) {
  auto tensor = [](std::vector<int64_t> shape, pb::DType dtype) {
    pb::Tensor t;
    t.set_dtype(dtype);
    int64_t n = 1;
    for (int64_t d : shape) {
      t.add_shape(d);
      n *= d;
    }
    const int size = DTypeSize(wire::ToCoreDType(dtype));
    std::string data(static_cast<size_t>(n * size), '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 37 + 11) & 0x3f);
    t.set_data(data);
    return t;
  };
  auto write = [&](const std::string& name, char kind, const google::protobuf::Message& m) {
    std::ofstream(dir + "/" + name, std::ios::binary) << kind << m.SerializeAsString();
  };
  pb::AttendRequest a;
  *a.mutable_query() = tensor({1, 4, 3, 8}, pb::DTYPE_FLOAT32);
  *a.mutable_key() = tensor({1, 2, 5, 8}, pb::DTYPE_FLOAT32);
  *a.mutable_value() = tensor({1, 2, 5, 6}, pb::DTYPE_FLOAT32);
  a.mutable_mask()->set_causal(true);
  write("attend_gqa_causal", 'a', a);
  a.mutable_mask()->add_key_lengths(4);
  *a.mutable_mask()->mutable_keep() = tensor({3, 5}, pb::DTYPE_BOOL);
  *a.mutable_query() = tensor({1, 4, 3, 8}, pb::DTYPE_FLOAT16);
  a.set_return_weights(true);
  a.set_output_dtype(pb::DTYPE_BFLOAT16);
  write("attend_masks_half", 'a', a);
  for (const char* variant : {"mha", "gqa", "mqa", "mla", "sa"}) {
    pb::ForwardRequest f;
    pb::ModuleConfig c;
    c.set_d_model(16);
    const std::string v = variant;
    if (v == "mha") c.mutable_mha()->set_num_heads(4);
    if (v == "gqa") {
      c.mutable_gqa()->set_num_q_heads(4);
      c.mutable_gqa()->set_num_kv_heads(2);
    }
    if (v == "mqa") c.mutable_mqa()->set_num_heads(2);
    if (v == "sa") {
      c.mutable_self_attention()->set_d_k(8);
      c.mutable_self_attention()->set_d_v(4);
    }
    if (v == "mla") {
      pb::LatentConfig* m = c.mutable_mla();
      m->set_num_heads(2);
      m->set_q_lora_rank(8);
      m->set_kv_lora_rank(8);
      m->set_qk_nope_head_dim(4);
      m->set_qk_rope_head_dim(2);
      m->set_v_head_dim(4);
    }
    pb::LoadModuleRequest l;
    *l.mutable_config() = c;
    l.set_name(variant);
    write(std::string("load_") + variant, 'l', l);
    pb::EstimateRequest e;
    *e.mutable_config() = c;
    e.set_batch(2);
    e.set_seq_len(64);
    write(std::string("estimate_") + variant, 'e', e);
    pb::DecodeRequest d;  // tokens for a module of this config
    *d.mutable_tokens() = tensor({1, 3, 16}, pb::DTYPE_FLOAT32);
    write(std::string("module_") + variant, 'm', c);
    (void)f;
  }
  pb::LoadModuleRequest lw;
  lw.mutable_config()->set_d_model(4);
  lw.mutable_config()->mutable_mha()->set_num_heads(2);
  lw.mutable_config()->set_bias(false);
  for (const char* n : {"W_q.weight", "W_k.weight", "w_v.weight", "W_o.weight"}) {
    (*lw.mutable_weights())[n] = tensor({4, 4}, pb::DTYPE_FLOAT32);
  }
  write("load_mha_weights", 'l', lw);
}

}  // namespace
}  // namespace attention

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("ATTN_FUZZ_WRITE_SEEDS")) {
    attention::WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace pb = ::attention::v1;
  if (size < 1) return 0;
  const char kind = static_cast<char>(data[0]);
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (kind) {
    case 'a': {
      pb::AttendRequest r;
      if (r.ParseFromString(bytes)) attention::FuzzAttend(r);
      break;
    }
    case 'm': {
      pb::ModuleConfig c;
      if (!c.ParseFromString(bytes)) break;
      pb::Tensor x;
      x.set_dtype(pb::DTYPE_FLOAT32);
      for (int64_t d : {int64_t{1}, int64_t{3}, c.d_model()}) x.add_shape(d);
      if (c.d_model() > 0 && c.d_model() < 4096) {
        x.set_data(std::string(static_cast<size_t>(3 * c.d_model() * 4), '\x01'));
      }
      attention::FuzzModule(c, x, pb::Mask());
      break;
    }
    case 'l': {
      pb::LoadModuleRequest r;
      if (r.ParseFromString(bytes)) attention::FuzzLoad(r);
      break;
    }
    case 'e': {
      pb::EstimateRequest r;
      if (!r.ParseFromString(bytes)) break;
      auto c = attention::wire::ConfigFromProto(r.config());
      if (c.ok()) (void)attention::EstimateCosts(*c, r.batch(), r.seq_len());
      break;
    }
    default:
      break;
  }
  return 0;
}
