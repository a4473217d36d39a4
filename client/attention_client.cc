#include "client/attention_client.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <future>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "wire/convert.h"

namespace attention::client {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

namespace {

Timing TimingOf(const pb::Timing& t) { return {t.queue_us(), t.compute_us(), t.flops()}; }

std::string ChannelTarget(const std::string& target) {
  if (absl::StrContains(target, ",") && !absl::StrContains(target, ":///") &&
      !absl::StartsWith(target, "ipv4:") && !absl::StartsWith(target, "ipv6:")) {
    return absl::StrCat(absl::StartsWith(target, "[") ? "ipv6:" : "ipv4:", target);
  }
  return target;
}

}  // namespace

void TensorToProto(const Tensor& t, DType dtype, pb::Tensor* out) {
  wire::TensorToProto(t, wire::ToProtoDType(dtype), out);
}

absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t) {
  return wire::TensorFromProto(t, "response tensor", {}, 0);
}

void MaskToProto(const MaskSpec& mask, pb::Mask* out) {
  out->set_causal(mask.causal);
  out->mutable_key_lengths()->Assign(mask.key_lengths.begin(), mask.key_lengths.end());
  out->set_sliding_window(mask.sliding_window);
  if (mask.has_keep()) {
    pb::Tensor* keep = out->mutable_keep();
    keep->set_dtype(pb::DTYPE_BOOL);
    keep->mutable_shape()->Assign(mask.keep_shape.begin(), mask.keep_shape.end());
    keep->set_data(std::string(mask.keep.begin(), mask.keep.end()));
  }
}

pb::ModuleConfig ConfigToProto(const ModuleConfig& c) {
  pb::ModuleConfig out;
  wire::ConfigToProto(c, &out);
  return out;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const ClientOptions& options) {
  if (options.tls_ca_pem.empty() && options.tls_cert_pem.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_ca_pem;
  ssl.pem_cert_chain = options.tls_cert_pem;
  ssl.pem_private_key = options.tls_key_pem;
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::unique_ptr<AttentionClient>> AttentionClient::Connect(
    const std::string& target, const ClientOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("target: expected host:port, got ''");
  grpc::ChannelArguments args;
  const int max_bytes = static_cast<int>(
      std::min<int64_t>(options.max_message_bytes, std::numeric_limits<int>::max()));
  args.SetMaxReceiveMessageSize(max_bytes);
  args.SetMaxSendMessageSize(max_bytes);
  args.SetLoadBalancingPolicyName("round_robin");
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  auto channel =
      grpc::CreateCustomChannel(ChannelTarget(target), ChannelCredentials(options), args);
  return std::make_unique<AttentionClient>(std::move(channel), options);
}

AttentionClient::AttentionClient(std::shared_ptr<grpc::Channel> channel,
                                 const ClientOptions& options)
    : channel_(std::move(channel)),
      stub_(pb::AttentionService::NewStub(channel_)),
      options_(options) {}

void AttentionClient::PrepareContext(grpc::ClientContext* ctx) const {
  if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
  if (options_.timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
}

absl::StatusOr<AttendResult> AttentionClient::Attend(const Tensor& query, const Tensor& key,
                                                     const Tensor& value,
                                                     const AttendOptions& options) {
  pb::AttendRequest req;
  TensorToProto(query, options.wire_dtype, req.mutable_query());
  TensorToProto(key, options.wire_dtype, req.mutable_key());
  TensorToProto(value, options.wire_dtype, req.mutable_value());
  MaskToProto(options.mask, req.mutable_mask());
  req.set_scale(options.scale);
  req.set_return_weights(options.return_weights);
  req.set_output_dtype(options.output_dtype);
  req.set_compute_dtype(options.compute_dtype);
  req.set_logit_softcap(options.logit_softcap);
  if (!options.sinks.empty()) {
    const int64_t hq = static_cast<int64_t>(options.sinks.size());
    Tensor sinks({hq});
    std::copy(options.sinks.begin(), options.sinks.end(), sinks.data());
    TensorToProto(sinks, DType::kFloat32, req.mutable_sinks());
  }
  req.set_return_lse(options.return_lse);
  pb::AttendResponse resp;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ATTN_RETURN_IF_ERROR(FromGrpc(stub_->Attend(&ctx, req, &resp)));
  AttendResult r;
  ATTN_ASSIGN_OR_RETURN(r.output, TensorFromProto(resp.output()));
  if (resp.has_weights()) {
    ATTN_ASSIGN_OR_RETURN(r.weights, TensorFromProto(resp.weights()));
  }
  if (resp.has_lse()) {
    ATTN_ASSIGN_OR_RETURN(r.lse, TensorFromProto(resp.lse()));
  }
  r.variant = resp.variant();
  r.output_dtype = resp.output().dtype();
  r.timing = TimingOf(resp.timing());
  return r;
}

absl::StatusOr<pb::ModuleInfo> AttentionClient::LoadModule(const std::string& name,
                                                           const pb::ModuleConfig& config,
                                                           const WeightMap& weights, uint64_t seed,
                                                           bool replace, DType wire_dtype) {
  pb::LoadModuleRequest req;
  req.set_name(name);
  *req.mutable_config() = config;
  for (const auto& [n, t] : weights) TensorToProto(t, wire_dtype, &(*req.mutable_weights())[n]);
  req.set_random_seed(seed);
  req.set_replace(replace);
  return LoadModule(req);
}

absl::StatusOr<pb::ModuleInfo> AttentionClient::LoadModule(const pb::LoadModuleRequest& req) {
  pb::ModuleInfo info;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ATTN_RETURN_IF_ERROR(FromGrpc(stub_->LoadModule(&ctx, req, &info)));
  return info;
}

absl::StatusOr<std::vector<pb::ModuleInfo>> AttentionClient::ListModules() {
  pb::ListModulesResponse resp;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ATTN_RETURN_IF_ERROR(FromGrpc(stub_->ListModules(&ctx, pb::ListModulesRequest(), &resp)));
  return std::vector<pb::ModuleInfo>(resp.modules().begin(), resp.modules().end());
}

absl::Status AttentionClient::UnloadModule(const std::string& name) {
  pb::UnloadModuleRequest req;
  req.set_name(name);
  pb::UnloadModuleResponse resp;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  return FromGrpc(stub_->UnloadModule(&ctx, req, &resp));
}

absl::StatusOr<ForwardOutput> AttentionClient::Forward(const std::string& module,
                                                       const Tensor& query,
                                                       const ForwardOptions& options) {
  pb::ForwardRequest req;
  req.set_module(module);
  TensorToProto(query, options.wire_dtype, req.mutable_query());
  if (options.key != nullptr) TensorToProto(*options.key, options.wire_dtype, req.mutable_key());
  if (options.value != nullptr) {
    TensorToProto(*options.value, options.wire_dtype, req.mutable_value());
  }
  MaskToProto(options.mask, req.mutable_mask());
  req.set_position_offset(options.position_offset);
  req.set_return_weights(options.return_weights);
  req.set_output_dtype(options.output_dtype);
  pb::ForwardResponse resp;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ATTN_RETURN_IF_ERROR(FromGrpc(stub_->Forward(&ctx, req, &resp)));
  ForwardOutput r;
  ATTN_ASSIGN_OR_RETURN(r.output, TensorFromProto(resp.output()));
  if (resp.has_weights()) {
    ATTN_ASSIGN_OR_RETURN(r.weights, TensorFromProto(resp.weights()));
  }
  r.output_dtype = resp.output().dtype();
  r.timing = TimingOf(resp.timing());
  return r;
}

absl::StatusOr<std::unique_ptr<DecodeStream>> AttentionClient::StartDecode(
    const std::string& module, int64_t batch, int64_t max_tokens, pb::DType kv_cache_dtype) {
  std::unique_ptr<DecodeStream> s(new DecodeStream);
  s->ctx_ = std::make_unique<grpc::ClientContext>();
  PrepareContext(s->ctx_.get());
  s->stream_ = stub_->Decode(s->ctx_.get());
  pb::DecodeRequest req;
  req.mutable_start()->set_module(module);
  req.mutable_start()->set_batch(batch);
  req.mutable_start()->set_max_tokens(max_tokens);
  req.mutable_start()->set_kv_cache_dtype(kv_cache_dtype);
  if (!s->stream_->Write(req)) return s->Finish();
  return s;
}

DecodeStream::~DecodeStream() {
  if (!done_) Cancel();
}

absl::Status DecodeStream::Finish() {
  if (!done_) {
    done_ = true;
    error_ = FromGrpc(stream_->Finish());
    if (error_.ok()) error_ = absl::FailedPreconditionError("stream: already closed");
  }
  return error_;
}

absl::StatusOr<DecodeChunk> DecodeStream::Step(const Tensor& tokens, DType wire_dtype) {
  if (done_) return error_;
  pb::DecodeRequest req;
  TensorToProto(tokens, wire_dtype, req.mutable_tokens());
  pb::DecodeResponse resp;
  if (!stream_->Write(req) || !stream_->Read(&resp)) return Finish();
  DecodeChunk chunk;
  ATTN_ASSIGN_OR_RETURN(chunk.output, TensorFromProto(resp.output()));
  chunk.cached_tokens = resp.cached_tokens();
  chunk.kv_cache_bytes = resp.kv_cache_bytes();
  chunk.timing = TimingOf(resp.timing());
  return chunk;
}

absl::Status DecodeStream::Close() {
  if (done_)
    return error_.code() == absl::StatusCode::kFailedPrecondition ? absl::OkStatus() : error_;
  stream_->WritesDone();
  done_ = true;
  error_ = FromGrpc(stream_->Finish());
  return error_;
}

void DecodeStream::Cancel() {
  if (done_) return;
  ctx_->TryCancel();
  done_ = true;
  error_ = absl::CancelledError("stream cancelled by the client");
  stream_->Finish();
}

absl::StatusOr<pb::EstimateResponse> AttentionClient::Estimate(const pb::ModuleConfig& config,
                                                               int64_t batch, int64_t seq_len) {
  pb::EstimateRequest req;
  *req.mutable_config() = config;
  req.set_batch(batch);
  req.set_seq_len(seq_len);
  pb::EstimateResponse resp;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ATTN_RETURN_IF_ERROR(FromGrpc(stub_->Estimate(&ctx, req, &resp)));
  return resp;
}

absl::StatusOr<pb::ServerInfo> AttentionClient::GetServerInfo() {
  pb::ServerInfo info;
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ATTN_RETURN_IF_ERROR(FromGrpc(stub_->GetServerInfo(&ctx, pb::GetServerInfoRequest(), &info)));
  return info;
}

absl::StatusOr<int> AttentionClient::CheckHealth(const std::string& service) {
  // grpc.health.v1.HealthCheckRequest{string service = 1} encoded by hand:
  // Debian ships no health.proto to generate a stub from.
  std::string request;
  if (!service.empty()) {
    request.push_back(0x0a);
    size_t n = service.size();
    do {
      request.push_back(static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
      n >>= 7;
    } while (n != 0);
    request += service;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer req_buf(&slice, 1), resp_buf;
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &req_buf, &resp_buf,
                    [&done](grpc::Status s) { done.set_value(std::move(s)); });
  ATTN_RETURN_IF_ERROR(FromGrpc(done.get_future().get()));
  std::vector<grpc::Slice> slices;
  if (!resp_buf.Dump(&slices).ok()) return absl::InternalError("health: unreadable response");
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{ServingStatus status = 1}: tag 0x08 then a varint.
  if (bytes.size() >= 2 && bytes[0] == 0x08) return static_cast<int>(bytes[1]);
  return 0;  // UNKNOWN (field absent)
}

}  // namespace attention::client
