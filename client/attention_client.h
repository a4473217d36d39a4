// AttentionClient: a typed C++ client for attention.v1.
//
// Tensors go in and come out as core `Tensor`s (float32 std::vector
// storage); the wire dtype of inputs (FLOAT32/FLOAT16/BFLOAT16) and of
// outputs (`output_dtype`) are options, and 16-bit outputs are widened back
// to float32 on arrival. Errors are absl::Status with the server's code and
// message. A client is thread-safe: one channel, many concurrent calls.
//
// Targets: "host:port"; "dns:///name:port" (every address the name resolves
// to, balanced per call with round_robin); or a comma list
// "127.0.0.1:50051,127.0.0.1:50052" (ipv4/ipv6 literals, round_robin).
#ifndef ATTENTION_CLIENT_ATTENTION_CLIENT_H_
#define ATTENTION_CLIENT_ATTENTION_CLIENT_H_

#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "attention/v1/attention.grpc.pb.h"
#include "core/dtype.h"
#include "core/module.h"
#include "core/sdpa.h"
#include "core/tensor.h"

namespace attention::client {

namespace pb = ::attention::v1;

struct ClientOptions {
  int64_t max_message_bytes = int64_t{256} << 20;
  absl::Duration timeout = absl::InfiniteDuration();  // per call
  // TLS: the CA to trust (PEM); empty = plaintext. A client certificate and
  // key (PEM) for mutual TLS. tls_server_name overrides the name checked
  // against the server's certificate.
  std::string tls_ca_pem, tls_cert_pem, tls_key_pem, tls_server_name;
  // Sent as "authorization: Bearer <token>" on every call when not empty.
  std::string token;
};

// Reads a file (for PEM files and token files); NOT_FOUND naming it.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// Channel credentials for `options` (plaintext or TLS).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const ClientOptions& options);

struct Timing {
  int64_t queue_us = 0;
  int64_t compute_us = 0;
  double flops = 0;
};

struct AttendOptions {
  MaskSpec mask;
  float scale = 0.0f;  // 0: 1/sqrt(Dk)
  bool return_weights = false;
  DType wire_dtype = DType::kFloat32;               // how q, k, v are sent
  pb::DType output_dtype = pb::DTYPE_UNSPECIFIED;   // as the query
  pb::DType compute_dtype = pb::DTYPE_UNSPECIFIED;  // FLOAT32, or BFLOAT16
  float logit_softcap = 0.0f;                       // 0: none
  std::vector<float> sinks = {};                    // empty, or [Hq] logits
  bool return_lse = false;
};

struct AttendResult {
  Tensor output;   // [B, Hq, Lq, Dv]
  Tensor weights;  // [B, Hq, Lq, Lk] when asked for
  Tensor lse;      // [B, Hq, Lq] when asked for (return_lse)
  std::string variant;
  pb::DType output_dtype = pb::DTYPE_FLOAT32;  // as it came on the wire
  Timing timing;
};

struct ForwardOptions {
  const Tensor* key = nullptr;    // [B, Lk, d_model]; absent: query
  const Tensor* value = nullptr;  // [B, Lk, d_model]; absent: key
  MaskSpec mask;
  bool return_weights = false;
  DType wire_dtype = DType::kFloat32;
  pb::DType output_dtype = pb::DTYPE_UNSPECIFIED;
  int64_t position_offset = 0;  // rotary embeddings: position of the first token
};

struct ForwardOutput {
  Tensor output;   // [B, Lq, d_model] (self_attention: [B, Lq, d_v])
  Tensor weights;  // [B, H, Lq, Lk] when asked for
  pb::DType output_dtype = pb::DTYPE_FLOAT32;
  Timing timing;
};

// Encodes a float32 tensor for the wire as `dtype`.
void TensorToProto(const Tensor& t, DType dtype, pb::Tensor* out);
// Decodes a FLOAT32/FLOAT16/BFLOAT16 wire tensor; INVALID_ARGUMENT if the
// data length disagrees with the shape.
absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t);
void MaskToProto(const MaskSpec& mask, pb::Mask* out);
// A core ModuleConfig as the contract's message.
pb::ModuleConfig ConfigToProto(const ModuleConfig& config);

struct DecodeChunk {
  Tensor output;  // [B, T, d_model]
  int64_t cached_tokens = 0;
  int64_t kv_cache_bytes = 0;
  Timing timing;
};

// One Decode stream (not thread-safe; one per thread). The server frees the
// stream's KV cache when it ends: Close(), Cancel(), or this object's
// destruction (which cancels an open stream).
class DecodeStream {
 public:
  ~DecodeStream();
  // Sends `tokens` [B, T, d_model] and waits for their outputs. After an
  // error the stream is over and every later call returns that error.
  absl::StatusOr<DecodeChunk> Step(const Tensor& tokens, DType wire_dtype = DType::kFloat32);
  // Half-closes and returns the server's final status.
  absl::Status Close();
  // Abandons the stream (the server sees CANCELLED).
  void Cancel();

 private:
  friend class AttentionClient;
  DecodeStream() = default;
  absl::Status Finish();

  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::DecodeRequest, pb::DecodeResponse>> stream_;
  absl::Status error_;
  bool done_ = false;
};

class AttentionClient {
 public:
  static absl::StatusOr<std::unique_ptr<AttentionClient>> Connect(
      const std::string& target, const ClientOptions& options = {});
  AttentionClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  absl::StatusOr<AttendResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                      const AttendOptions& options = {});
  // Empty `weights`: the server initialises from `seed`.
  absl::StatusOr<pb::ModuleInfo> LoadModule(const std::string& name, const pb::ModuleConfig& config,
                                            const WeightMap& weights = {}, uint64_t seed = 0,
                                            bool replace = false,
                                            DType wire_dtype = DType::kFloat32);
  // Any LoadModuleRequest as it is (e.g. `file` and `weights_prefix`: a
  // checkpoint under the server's --model_dir).
  absl::StatusOr<pb::ModuleInfo> LoadModule(const pb::LoadModuleRequest& request);
  absl::StatusOr<std::vector<pb::ModuleInfo>> ListModules();
  absl::Status UnloadModule(const std::string& name);
  absl::StatusOr<ForwardOutput> Forward(const std::string& module, const Tensor& query,
                                        const ForwardOptions& options = {});
  // Opens a Decode stream and sends `start`. max_tokens 0: no per-stream cap;
  // kv_cache_dtype UNSPECIFIED: the module's.
  absl::StatusOr<std::unique_ptr<DecodeStream>> StartDecode(
      const std::string& module, int64_t batch, int64_t max_tokens = 0,
      pb::DType kv_cache_dtype = pb::DTYPE_UNSPECIFIED);
  absl::StatusOr<pb::EstimateResponse> Estimate(const pb::ModuleConfig& config, int64_t batch,
                                                int64_t seq_len);
  absl::StatusOr<pb::ServerInfo> GetServerInfo();
  // The grpc.health.v1 status of `service` ("" = the whole server):
  // 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
  absl::StatusOr<int> CheckHealth(const std::string& service = "");

  // For calls the typed wrappers do not cover (e.g. streaming).
  pb::AttentionService::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  void PrepareContext(grpc::ClientContext* ctx) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::AttentionService::Stub> stub_;
  ClientOptions options_;
};

// grpc::Status -> absl::Status (same code numbers).
absl::Status FromGrpc(const grpc::Status& s);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_ATTENTION_CLIENT_H_
