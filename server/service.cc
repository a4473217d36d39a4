#include "server/service.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "core/threading.h"
#include "server/convert.h"
#include "server/decode_reactor.h"

namespace attention::server {
namespace {

using Clock = std::chrono::steady_clock;

int64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC status codes share their numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::string JsonEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void LogCall(bool enabled, const char* method, const absl::Status& status, size_t request_bytes,
             size_t response_bytes, int64_t queue_us, int64_t latency_us) {
  if (!enabled) return;
  const std::string line = absl::StrCat(
      "{\"ts\":\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      "\",\"method\":\"", method, "\",\"code\":\"", absl::StatusCodeToString(status.code()),
      "\",\"request_bytes\":", request_bytes, ",\"response_bytes\":", response_bytes,
      ",\"queue_us\":", queue_us, ",\"latency_us\":", latency_us,
      status.ok() ? "" : absl::StrCat(",\"error\":\"", JsonEscape(status.message()), "\""), "}\n");
  std::fputs(line.c_str(), stderr);
}

// The status of a call the client gave up on.
absl::Status Abandoned(grpc::CallbackServerContext* ctx) {
  if (ctx->deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("deadline exceeded before the computation started");
  }
  return absl::CancelledError("call cancelled before the computation started");
}

constexpr TensorSpec kQuerySpec{4, "[B, Hq, Lq, Dk]"};
constexpr TensorSpec kKeySpec{4, "[B, Hkv, Lk, Dk]"};
constexpr TensorSpec kValueSpec{4, "[B, Hkv, Lk, Dv]"};
constexpr TensorSpec kInputSpec{3, "[B, L, d_model]"};

}  // namespace

const char* ServerVersion() { return "0.1.0"; }

absl::StatusOr<std::unique_ptr<AttentionServiceImpl>> AttentionServiceImpl::Create(
    const ServiceOptions& options) {
  ATTN_ASSIGN_OR_RETURN(std::unique_ptr<KvBlockPool> kv,
                        KvBlockPool::Create(options.kv_cache_bytes, options.kv_block_bytes));
  return std::make_unique<AttentionServiceImpl>(options, std::move(kv));
}

AttentionServiceImpl::AttentionServiceImpl(const ServiceOptions& options,
                                           std::unique_ptr<KvBlockPool> kv)
    : options_(options), kv_pool_(std::move(kv)) {
  if (options_.compute_threads <= 0) {
    options_.compute_threads = static_cast<int>(std::thread::hardware_concurrency());
  }
  pool_ = std::make_unique<WorkPool>(options_.workers, options_.compute_threads);
}

absl::Status AttentionServiceImpl::AcquireStream() {
  if (draining_.load()) return Draining();
  const int now = ++streams_;
  if (options_.max_streams > 0 && now > options_.max_streams) {
    --streams_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "start: ", options_.max_streams, " Decode streams are open, the server's limit (--max_streams)"));
  }
  return absl::OkStatus();
}

void AttentionServiceImpl::LogStream(const absl::Status& status, int64_t cached_tokens) {
  LogCall(options_.log_calls, "Decode", status, 0, static_cast<size_t>(cached_tokens), 0, 0);
}

grpc::ServerBidiReactor<pb::DecodeRequest, pb::DecodeResponse>* AttentionServiceImpl::Decode(
    grpc::CallbackServerContext* ctx) {
  return new DecodeReactor(this, ctx);
}

AttentionServiceImpl::~AttentionServiceImpl() = default;

// Runs `fn` (absl::Status(int64_t queue_us)) on the pool, finishing the
// reactor with its status and writing the call's log line. While draining,
// calls are refused at once.
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* AttentionServiceImpl::RunOnPool(const char* method,
                                                          grpc::CallbackServerContext* ctx,
                                                          const Request* request,
                                                          Response* response, Fn fn) {
  if (draining_.load()) return RunInline(method, ctx, request, response, [] { return Draining(); });
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Clock::time_point arrived = Clock::now();
  ++inflight_;
  pool_->Submit([=, this]() mutable {
    const Clock::time_point started = Clock::now();
    if (options_.test_delay_ms > 0) absl::SleepFor(absl::Milliseconds(options_.test_delay_ms));
    absl::Status status = ctx->IsCancelled() ? Abandoned(ctx) : fn(Micros(started - arrived));
    if (!status.ok()) response->Clear();
    const size_t response_bytes = status.ok() ? response->ByteSizeLong() : 0;
    LogCall(options_.log_calls, method, status, request->ByteSizeLong(), response_bytes,
            Micros(started - arrived), Micros(Clock::now() - arrived));
    reactor->Finish(ToGrpc(status));
    --inflight_;
  });
  return reactor;
}

template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* AttentionServiceImpl::RunInline(const char* method,
                                                          grpc::CallbackServerContext* ctx,
                                                          const Request* request,
                                                          Response* response, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Clock::time_point arrived = Clock::now();
  const absl::Status status = draining_.load() ? Draining() : fn();
  if (!status.ok()) response->Clear();
  LogCall(options_.log_calls, method, status, request->ByteSizeLong(),
          status.ok() ? response->ByteSizeLong() : 0, 0, Micros(Clock::now() - arrived));
  reactor->Finish(ToGrpc(status));
  return reactor;
}

absl::Status AttentionServiceImpl::Draining() {
  return absl::UnavailableError("server: draining for shutdown; retry on another replica");
}

void AttentionServiceImpl::StartDraining() { draining_.store(true); }

grpc::ServerUnaryReactor* AttentionServiceImpl::Attend(grpc::CallbackServerContext* ctx,
                                                       const pb::AttendRequest* req,
                                                       pb::AttendResponse* resp) {
  return RunOnPool("Attend", ctx, req, resp,
                   [this, req, resp](int64_t queue_us) -> absl::Status {
    const int64_t limit = options_.max_tensor_elements;
    if (!req->has_query()) return absl::InvalidArgumentError("query: required, got nothing");
    if (!req->has_key()) return absl::InvalidArgumentError("key: required, got nothing");
    if (!req->has_value()) return absl::InvalidArgumentError("value: required, got nothing");
    ATTN_ASSIGN_OR_RETURN(pb::DType out_dtype, ResolveOutputDType(req->output_dtype(),
                                                                  req->query().dtype(),
                                                                  "output_dtype"));
    if (!std::isfinite(req->scale())) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale: expected a finite number (0: 1/sqrt(Dk)), got ", req->scale()));
    }
    // Float32 inputs are read where protobuf parsed them; float32 outputs
    // are written straight into the response.
    Tensor q_store, k_store, v_store;
    ATTN_ASSIGN_OR_RETURN(View4 q, ViewFromProto(req->query(), "query", kQuerySpec, limit, &q_store));
    ATTN_ASSIGN_OR_RETURN(View4 k, ViewFromProto(req->key(), "key", kKeySpec, limit, &k_store));
    ATTN_ASSIGN_OR_RETURN(View4 v, ViewFromProto(req->value(), "value", kValueSpec, limit, &v_store));
    ATTN_ASSIGN_OR_RETURN(MaskSpec mask, MaskFromProto(req->mask(), "mask", limit));
    ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
    const std::vector<int64_t> out_shape = {q.dims[0], q.dims[1], q.dims[2], v.dims[3]};
    const std::vector<int64_t> w_shape = {q.dims[0], q.dims[1], q.dims[2], k.dims[2]};
    ATTN_RETURN_IF_ERROR(CheckElementLimit("output", out_shape, limit));
    if (req->return_weights()) ATTN_RETURN_IF_ERROR(CheckElementLimit("weights", w_shape, limit));
    const Clock::time_point start = Clock::now();
    if (out_dtype == pb::DTYPE_FLOAT32) {
      const MutView4 out = OutputView(out_shape, resp->mutable_output());
      float* weights = req->return_weights()
                           ? OutputView(w_shape, resp->mutable_weights()).data
                           : nullptr;
      ATTN_RETURN_IF_ERROR(Sdpa(q, k, v, mask, req->scale(), out, weights));
    } else {
      Tensor out(out_shape), weights;
      if (req->return_weights()) weights = Tensor(w_shape);
      ATTN_RETURN_IF_ERROR(Sdpa(q, k, v, mask, req->scale(), MutView4::Of(out),
                                req->return_weights() ? weights.data() : nullptr));
      TensorToProto(out, out_dtype, resp->mutable_output());
      if (req->return_weights()) TensorToProto(weights, out_dtype, resp->mutable_weights());
    }
    resp->mutable_timing()->set_compute_us(Micros(Clock::now() - start));
    resp->mutable_timing()->set_queue_us(queue_us);
    resp->mutable_timing()->set_flops(SdpaFlops(q.dims[0], q.dims[1], q.dims[2], k.dims[2],
                                                q.dims[3], v.dims[3], mask.causal));
    resp->set_variant(VariantName(q.dims[1], k.dims[1]));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttentionServiceImpl::Forward(grpc::CallbackServerContext* ctx,
                                                        const pb::ForwardRequest* req,
                                                        pb::ForwardResponse* resp) {
  return RunOnPool("Forward", ctx, req, resp,
                   [this, req, resp](int64_t queue_us) -> absl::Status {
    const int64_t limit = options_.max_tensor_elements;
    ATTN_ASSIGN_OR_RETURN(LoadedModule m, registry_.Get(req->module()));
    const ModuleConfig& config = m.module->config();
    if (!req->has_query()) return absl::InvalidArgumentError("query: required, got nothing");
    ATTN_ASSIGN_OR_RETURN(pb::DType out_dtype, ResolveOutputDType(req->output_dtype(),
                                                                  req->query().dtype(),
                                                                  "output_dtype"));
    ATTN_ASSIGN_OR_RETURN(Tensor query, TensorFromProto(req->query(), "query", kInputSpec, limit));
    Tensor key, value;
    ForwardInput in;
    in.query = &query;
    if (req->has_key()) {
      ATTN_ASSIGN_OR_RETURN(key, TensorFromProto(req->key(), "key", kInputSpec, limit));
      in.key = &key;
    }
    if (req->has_value()) {
      ATTN_ASSIGN_OR_RETURN(value, TensorFromProto(req->value(), "value", kInputSpec, limit));
      in.value = &value;
    }
    ATTN_ASSIGN_OR_RETURN(in.mask, MaskFromProto(req->mask(), "mask", limit));
    in.return_weights = req->return_weights();
    // Output and largest intermediate sizes before anything is computed.
    const int64_t b = query.dim(0), lq = query.dim(1);
    const int64_t lk = in.key != nullptr ? key.dim(1) : lq;
    ATTN_RETURN_IF_ERROR(CheckElementLimit("output", {b, lq, OutputDim(config)}, limit));
    if (in.return_weights) {
      ATTN_RETURN_IF_ERROR(
          CheckElementLimit("weights", {b, NumQueryHeads(config), lq, lk}, limit));
    }
    const Clock::time_point start = Clock::now();
    ATTN_ASSIGN_OR_RETURN(ForwardResult r, m.module->Forward(in));
    resp->mutable_timing()->set_compute_us(Micros(Clock::now() - start));
    resp->mutable_timing()->set_queue_us(queue_us);
    resp->mutable_timing()->set_flops(r.flops);
    TensorToProto(r.output, out_dtype, resp->mutable_output());
    if (in.return_weights) TensorToProto(r.weights, out_dtype, resp->mutable_weights());
    return absl::OkStatus();
  });
}

namespace {

absl::Status CheckModuleName(const std::string& name) {
  if (name.empty() || name.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: expected 1..256 bytes, got ", name.size()));
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("name: expected no control characters, got byte 0x",
                       absl::Hex(c, absl::kZeroPad2)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadedModule> BuildModule(const pb::LoadModuleRequest& req, int64_t limit) {
  ATTN_RETURN_IF_ERROR(CheckModuleName(req.name()));
  ATTN_ASSIGN_OR_RETURN(ModuleConfig config, ConfigFromProto(req.config()));
  // Refuse a module larger than the limits before allocating its weights.
  for (const WeightSpec& s : ExpectedWeights(config)) {
    ATTN_RETURN_IF_ERROR(CheckElementLimit(absl::StrCat("weights['", s.name, "']"), s.shape, limit));
  }
  LoadedModule loaded;
  std::unique_ptr<AttentionModule> module;
  if (req.weights().empty()) {
    ATTN_ASSIGN_OR_RETURN(module, AttentionModule::CreateRandom(config, req.random_seed()));
  } else {
    WeightMap weights;
    for (const auto& [name, tensor] : req.weights()) {
      ATTN_ASSIGN_OR_RETURN(
          Tensor t, TensorFromProto(tensor, absl::StrCat("weights['", name, "']"), {}, limit));
      weights.emplace(name, std::move(t));
    }
    ATTN_ASSIGN_OR_RETURN(module, AttentionModule::Create(config, std::move(weights)));
  }
  loaded.info.set_name(req.name());
  *loaded.info.mutable_config() = req.config();
  loaded.info.set_parameter_count(module->parameter_count());
  loaded.info.set_kv_cache_bytes_per_token(module->kv_cache_bytes_per_token());
  loaded.module = std::move(module);
  return loaded;
}

}  // namespace

grpc::ServerUnaryReactor* AttentionServiceImpl::LoadModule(grpc::CallbackServerContext* ctx,
                                                           const pb::LoadModuleRequest* req,
                                                           pb::ModuleInfo* resp) {
  return RunOnPool("LoadModule", ctx, req, resp,
                   [this, req, resp](int64_t) -> absl::Status {
    ATTN_ASSIGN_OR_RETURN(LoadedModule loaded, BuildModule(*req, options_.max_tensor_elements));
    *resp = loaded.info;
    return registry_.Add(req->name(), std::move(loaded), req->replace());
  });
}

grpc::ServerUnaryReactor* AttentionServiceImpl::ListModules(grpc::CallbackServerContext* ctx,
                                                            const pb::ListModulesRequest* req,
                                                            pb::ListModulesResponse* resp) {
  return RunInline("ListModules", ctx, req, resp, [&] {
    for (auto& info : registry_.List()) *resp->add_modules() = std::move(info);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttentionServiceImpl::UnloadModule(grpc::CallbackServerContext* ctx,
                                                             const pb::UnloadModuleRequest* req,
                                                             pb::UnloadModuleResponse* resp) {
  return RunInline("UnloadModule", ctx, req, resp,
                   [&] { return registry_.Remove(req->name()); });
}

grpc::ServerUnaryReactor* AttentionServiceImpl::Estimate(grpc::CallbackServerContext* ctx,
                                                         const pb::EstimateRequest* req,
                                                         pb::EstimateResponse* resp) {
  return RunInline("Estimate", ctx, req, resp, [&]() -> absl::Status {
    ATTN_ASSIGN_OR_RETURN(ModuleConfig config, ConfigFromProto(req->config()));
    ATTN_ASSIGN_OR_RETURN(CostEstimate e, EstimateCosts(config, req->batch(), req->seq_len()));
    resp->set_parameters(e.parameters);
    resp->set_kv_cache_bytes_per_token(e.kv_cache_bytes_per_token);
    resp->set_kv_cache_bytes(e.kv_cache_bytes);
    resp->set_prefill_flops(e.prefill_flops);
    resp->set_decode_flops_per_token(e.decode_flops_per_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttentionServiceImpl::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                              const pb::GetServerInfoRequest* req,
                                                              pb::ServerInfo* resp) {
  return RunInline("GetServerInfo", ctx, req, resp, [&] {
    resp->set_version(ServerVersion());
    resp->set_onednn_version(OneDnnVersion());
    resp->set_cpu_isa(CpuIsa());
    resp->set_threads(static_cast<int32_t>(std::thread::hardware_concurrency()));
    pb::Limits* limits = resp->mutable_limits();
    limits->set_max_message_bytes(options_.max_message_bytes);
    limits->set_max_tensor_elements(options_.max_tensor_elements);
    limits->set_max_inflight_requests(options_.workers);
    limits->set_compute_threads(options_.compute_threads);
    limits->set_kv_cache_bytes(kv_pool_->total_blocks() * kv_pool_->block_bytes());
    limits->set_max_concurrent_streams(options_.max_streams);
    pb::KvCacheUsage* kv = resp->mutable_kv_cache();
    kv->set_block_bytes(kv_pool_->block_bytes());
    kv->set_blocks_total(kv_pool_->total_blocks());
    kv->set_blocks_used(kv_pool_->used_blocks());
    kv->set_streams(streams_.load());
    for (const char* v : {"self_attention", "mha", "gqa", "mqa", "mla"}) resp->add_variants(v);
    return absl::OkStatus();
  });
}

absl::Status LoadDemoModules(ModuleRegistry& registry) {
  struct Demo {
    const char* name;
    ModuleConfig config;
  };
  auto make = [](Variant v, int64_t d_model) {
    ModuleConfig c;
    c.variant = v;
    c.d_model = d_model;
    return c;
  };
  ModuleConfig sa = make(Variant::kSelfAttention, 128);
  sa.d_k = 64;
  sa.d_v = 32;
  ModuleConfig mha = make(Variant::kMha, 512);
  mha.num_heads = 8;
  ModuleConfig gqa = make(Variant::kGqa, 512);
  gqa.num_heads = 8;
  gqa.num_kv_heads = 2;
  ModuleConfig mqa = make(Variant::kMqa, 512);
  mqa.num_heads = 8;
  ModuleConfig mla = make(Variant::kMla, 512);
  mla.num_heads = 8;
  mla.q_lora_rank = 192;
  mla.kv_lora_rank = 128;
  mla.qk_nope_head_dim = 32;
  mla.qk_rope_head_dim = 16;
  mla.v_head_dim = 32;
  uint64_t seed = 1;
  for (const Demo& d : {Demo{"demo-sa", sa}, Demo{"demo-mha", mha}, Demo{"demo-gqa", gqa},
                        Demo{"demo-mqa", mqa}, Demo{"demo-mla", mla}}) {
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<AttentionModule> m,
                          AttentionModule::CreateRandom(d.config, seed++));
    LoadedModule loaded;
    loaded.info.set_name(d.name);
    ConfigToProto(d.config, loaded.info.mutable_config());
    loaded.info.set_parameter_count(m->parameter_count());
    loaded.info.set_kv_cache_bytes_per_token(m->kv_cache_bytes_per_token());
    loaded.module = std::move(m);
    ATTN_RETURN_IF_ERROR(registry.Add(d.name, std::move(loaded), true));
  }
  return absl::OkStatus();
}

}  // namespace attention::server
