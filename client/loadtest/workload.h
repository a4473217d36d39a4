// What attention_loadtest sends: one or more weighted request kinds, each
// built (and serialized) once before the run.
#ifndef ATTENTION_CLIENT_LOADTEST_WORKLOAD_H_
#define ATTENTION_CLIENT_LOADTEST_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/attention_client.h"

namespace attention::loadtest {

enum class RpcKind { kAttend, kForward, kDecode, kHealth };

// Shape and options of one request kind; the flags of attention_loadtest and
// the lines of a mix file fill it.
struct WorkloadSpec {
  RpcKind rpc = RpcKind::kAttend;
  int weight = 1;  // share in a mix
  // attend: q [b, hq, lq, dk], k/v [b, hkv, lk, dk|dv]
  int64_t b = 1, hq = 8, hkv = 2, lq = 128, lk = 0, dk = 64, dv = 64;
  bool causal = true;
  // forward / decode: a loaded module; input [b, lq, d_model]
  std::string module = "demo-gqa";
  int64_t decode_steps = 16;  // decode: tokens per stream after a prefill of lq
  // decode: the first shared_prefix tokens (0..lq) of every stream's prompt
  // are the same in every stream; the rest differ per stream.
  int64_t shared_prefix = 0;
  std::string dtype = "f32";   // wire dtype of inputs: f32, f16, bf16
};

struct Workload {
  std::string name;  // e.g. "attend b1 hq8 hkv2 lq128 lk128 d64" or "forward demo-gqa b1 l128"
  RpcKind rpc = RpcKind::kAttend;
  int weight = 1;
  std::string method;          // full gRPC method path (unary kinds)
  int timing_field = 0;        // field number of the response's Timing (0: none)
  std::string request;         // serialized request (unary kinds)
  // decode: the serialized start and one-token chunk messages; each
  // stream's prompt comes from DecodePromptRequest
  std::string decode_start, decode_token;
  int64_t decode_steps = 0;
  int64_t decode_b = 0, decode_lq = 0, decode_d_model = 0, decode_shared_prefix = 0;
  DType decode_dtype = DType::kFloat32;
  double tokens = 0;  // tokens per request (forward: B·Lq; decode step: B)
  double flops = 0;   // attention FLOPs per request (forward: the whole layer)
};

// Parses "attend|forward|decode|health key=value ..." (a mix-file line,
// without its weight) into `spec`, starting from `spec`'s values.
absl::Status ParseSpec(const std::string& text, WorkloadSpec& spec);

// Builds the requests; forward/decode look the module up on the server.
absl::StatusOr<Workload> BuildWorkload(const WorkloadSpec& spec,
                                       client::AttentionClient& client);

// The prompt of decode stream number `stream`, [b, lq, d_model] of N(0, 1)
// values: in every batch row its first `shared_prefix` tokens are the same in
// every stream (the same values, so the same bytes on the wire), the rest are
// drawn from a seed of (stream, row). Deterministic; 0 <= shared_prefix <= lq.
Tensor DecodePrompt(int64_t b, int64_t lq, int64_t d_model, int64_t shared_prefix,
                    uint64_t stream);

// The prompt chunk of decode stream number `stream` of `w` (a decode
// workload): DecodePrompt in w's wire dtype, as the `tokens` of `out`.
void DecodePromptRequest(const Workload& w, uint64_t stream, ::attention::v1::DecodeRequest* out);

// A mix file: one request kind per line, "WEIGHT RPC key=value ...", '#'
// comments; keys are those of WorkloadSpec (b, hq, hkv, lq, lk, dk, dv,
// causal, module, decode_steps, shared_prefix, dtype).
absl::StatusOr<std::vector<WorkloadSpec>> ReadMixFile(const std::string& path,
                                                      const WorkloadSpec& defaults);

const char* RpcName(RpcKind rpc);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_WORKLOAD_H_
