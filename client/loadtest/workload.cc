#include "client/loadtest/workload.h"

#include <fstream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/cost_model.h"
#include "core/status_macros.h"
#include "wire/convert.h"

namespace attention::loadtest {
namespace {

namespace pb = ::attention::v1;

Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  Tensor t(std::move(shape));
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal;
  for (float& x : t.values()) x = normal(gen);
  return t;
}

absl::Status SetInt(const std::string& key, absl::string_view value, int64_t& out) {
  if (!absl::SimpleAtoi(value, &out) || out < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": expected a non-negative integer, got '", value, "'"));
  }
  return absl::OkStatus();
}

// The seed of a prompt's tokens: shared ones by row only, the others by
// stream and row.
uint64_t PromptSeed(bool shared, uint64_t stream, int64_t row) {
  const uint64_t base = shared ? 0x5eed5eed5eed5eedULL : 0x9e3779b97f4a7c15ULL * (stream + 1);
  return base ^ (static_cast<uint64_t>(row) * 0xbf58476d1ce4e5b9ULL + 3);
}

}  // namespace

Tensor DecodePrompt(int64_t b, int64_t lq, int64_t d_model, int64_t shared_prefix,
                    uint64_t stream) {
  Tensor t({b, lq, d_model});
  float* x = t.values().data();
  for (int64_t row = 0; row < b; ++row) {
    // A distribution each: one keeps a drawn value for its next call.
    std::mt19937_64 shared_gen(PromptSeed(true, stream, row));
    std::mt19937_64 own_gen(PromptSeed(false, stream, row));
    std::normal_distribution<float> shared, own;
    for (int64_t i = 0; i < shared_prefix * d_model; ++i) *x++ = shared(shared_gen);
    for (int64_t i = shared_prefix * d_model; i < lq * d_model; ++i) *x++ = own(own_gen);
  }
  return t;
}

void DecodePromptRequest(const Workload& w, uint64_t stream, pb::DecodeRequest* out) {
  client::TensorToProto(
      DecodePrompt(w.decode_b, w.decode_lq, w.decode_d_model, w.decode_shared_prefix, stream),
      w.decode_dtype, out->mutable_tokens());
}

const char* RpcName(RpcKind rpc) {
  switch (rpc) {
    case RpcKind::kAttend:
      return "attend";
    case RpcKind::kForward:
      return "forward";
    case RpcKind::kDecode:
      return "decode";
    case RpcKind::kHealth:
      return "health";
  }
  return "?";
}

absl::Status ParseSpec(const std::string& text, WorkloadSpec& spec) {
  std::vector<std::string> parts = absl::StrSplit(text, ' ', absl::SkipWhitespace());
  if (parts.empty()) return absl::InvalidArgumentError("workload: empty");
  if (parts[0] == "attend") {
    spec.rpc = RpcKind::kAttend;
  } else if (parts[0] == "forward") {
    spec.rpc = RpcKind::kForward;
  } else if (parts[0] == "decode") {
    spec.rpc = RpcKind::kDecode;
  } else if (parts[0] == "health") {
    spec.rpc = RpcKind::kHealth;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "rpc: expected attend, forward, decode or health, got '", parts[0], "'"));
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    std::pair<std::string, std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    const std::string& k = kv.first;
    const std::string& v = kv.second;
    if (k == "b") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.b));
    else if (k == "hq") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.hq));
    else if (k == "hkv") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.hkv));
    else if (k == "lq") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.lq));
    else if (k == "lk") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.lk));
    else if (k == "dk") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.dk));
    else if (k == "dv") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.dv));
    else if (k == "decode_steps") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.decode_steps));
    else if (k == "shared_prefix") ATTN_RETURN_IF_ERROR(SetInt(k, v, spec.shared_prefix));
    else if (k == "causal") spec.causal = v == "1" || v == "true";
    else if (k == "module") spec.module = v;
    else if (k == "dtype") spec.dtype = v;
    else return absl::InvalidArgumentError(absl::StrCat("workload: unknown key '", k, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<WorkloadSpec>> ReadMixFile(const std::string& path,
                                                      const WorkloadSpec& defaults) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--mix: cannot open ", path));
  std::vector<WorkloadSpec> specs;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view body = absl::StripAsciiWhitespace(line);
    if (body.empty() || body[0] == '#') continue;
    std::pair<std::string, std::string> wr = absl::StrSplit(body, absl::MaxSplits(' ', 1));
    WorkloadSpec spec = defaults;
    int weight = 0;
    if (!absl::SimpleAtoi(wr.first, &weight) || weight < 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number,
                                                     ": expected 'WEIGHT RPC key=value...'"));
    }
    spec.weight = weight;
    const absl::Status s = ParseSpec(wr.second, spec);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": ", s.message()));
    specs.push_back(spec);
  }
  if (specs.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no workloads"));
  return specs;
}

absl::StatusOr<Workload> BuildWorkload(const WorkloadSpec& spec, client::AttentionClient& client) {
  Workload w;
  w.rpc = spec.rpc;
  w.weight = spec.weight;
  ATTN_ASSIGN_OR_RETURN(DType wire_dtype, wire::ParseDType(spec.dtype, "dtype"));
  const int64_t lk = spec.lk > 0 ? spec.lk : spec.lq;
  switch (spec.rpc) {
    case RpcKind::kHealth:
      w.name = "health";
      w.method = "/grpc.health.v1.Health/Check";
      return w;  // empty HealthCheckRequest
    case RpcKind::kAttend: {
      pb::AttendRequest req;
      client::TensorToProto(Random({spec.b, spec.hq, spec.lq, spec.dk}, 1), wire_dtype,
                            req.mutable_query());
      client::TensorToProto(Random({spec.b, spec.hkv, lk, spec.dk}, 2), wire_dtype,
                            req.mutable_key());
      client::TensorToProto(Random({spec.b, spec.hkv, lk, spec.dv}, 3), wire_dtype,
                            req.mutable_value());
      req.mutable_mask()->set_causal(spec.causal);
      w.name = absl::StrCat("attend b", spec.b, " hq", spec.hq, " hkv", spec.hkv, " lq", spec.lq,
                            " lk", lk, " dk", spec.dk, " dv", spec.dv,
                            spec.causal ? " causal" : "", " ", spec.dtype);
      w.method = "/attention.v1.AttentionService/Attend";
      w.timing_field = pb::AttendResponse::kTimingFieldNumber;
      w.request = req.SerializeAsString();
      w.tokens = static_cast<double>(spec.b * spec.lq);
      w.flops = SdpaFlops(spec.b, spec.hq, spec.lq, lk, spec.dk, spec.dv, spec.causal);
      return w;
    }
    case RpcKind::kForward:
    case RpcKind::kDecode: {
      ATTN_ASSIGN_OR_RETURN(auto modules, client.ListModules());
      const pb::ModuleInfo* info = nullptr;
      for (const auto& m : modules) {
        if (m.name() == spec.module) info = &m;
      }
      if (info == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("module: no module named '", spec.module, "' on the server"));
      }
      const int64_t d = info->config().d_model();
      // The module's config, for the FLOP count.
      ATTN_ASSIGN_OR_RETURN(const ModuleConfig config, wire::ConfigFromProto(info->config()));
      if (spec.rpc == RpcKind::kForward) {
        pb::ForwardRequest req;
        req.set_module(spec.module);
        client::TensorToProto(Random({spec.b, spec.lq, d}, 1), wire_dtype, req.mutable_query());
        req.mutable_mask()->set_causal(spec.causal);
        w.name = absl::StrCat("forward ", spec.module, " b", spec.b, " l", spec.lq,
                              spec.causal ? " causal" : "", " ", spec.dtype);
        w.method = "/attention.v1.AttentionService/Forward";
        w.timing_field = pb::ForwardResponse::kTimingFieldNumber;
        w.request = req.SerializeAsString();
        w.tokens = static_cast<double>(spec.b * spec.lq);
        w.flops = LayerFlops(config, spec.b, spec.lq, spec.lq, spec.lq, spec.causal,
                             MlaForm::kNaive);
        return w;
      }
      if (spec.shared_prefix < 0 || spec.shared_prefix > spec.lq) {
        return absl::InvalidArgumentError(absl::StrCat("shared_prefix: expected 0..lq (",
                                                       spec.lq, "), got ", spec.shared_prefix));
      }
      pb::DecodeRequest start, token;
      start.mutable_start()->set_module(spec.module);
      start.mutable_start()->set_batch(spec.b);
      client::TensorToProto(Random({spec.b, 1, d}, 2), wire_dtype, token.mutable_tokens());
      w.name = absl::StrCat("decode ", spec.module, " b", spec.b, " prefill ", spec.lq,
                            spec.shared_prefix > 0
                                ? absl::StrCat(" (shared prefix ", spec.shared_prefix, ")")
                                : "",
                            " then ", spec.decode_steps, " tokens/stream ", spec.dtype);
      w.method = "/attention.v1.AttentionService/Decode";
      w.decode_start = start.SerializeAsString();
      w.decode_token = token.SerializeAsString();
      w.decode_steps = std::max<int64_t>(1, spec.decode_steps);
      w.decode_b = spec.b;
      w.decode_lq = spec.lq;
      w.decode_d_model = d;
      w.decode_shared_prefix = spec.shared_prefix;
      w.decode_dtype = wire_dtype;
      w.tokens = static_cast<double>(spec.b);
      w.flops = LayerFlops(config, spec.b, 1, spec.lq + w.decode_steps / 2, 1, true,
                           config.variant == Variant::kMla ? MlaForm::kAbsorbed : MlaForm::kNaive);
      return w;
    }
  }
  return absl::InternalError("workload: unknown rpc");
}

}  // namespace attention::loadtest
