#include "server/service.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/cancellation.h"
#include "core/status_macros.h"
#include "core/threading.h"
#include "server/decode_reactor.h"
#include "wire/convert.h"

namespace attention::server {

using wire::CheckElementLimit;
using wire::ConfigFromProto;
using wire::ConfigToProto;
using wire::MaskFromProto;
using wire::RefFromProto;
using wire::ResolveOutputDType;
using wire::TensorFromProto;
using wire::TensorSpec;
using wire::ToCoreDType;
using wire::ViewFromProto;

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
    // All cores, or OMP_NUM_THREADS when the environment sets it.
    options_.compute_threads = ComputeThreads();
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

void AttentionServiceImpl::LogStream(const absl::Status& status, int64_t cached_tokens,
                                     int64_t latency_us) {
  Observe("Decode", status, 0, static_cast<size_t>(cached_tokens), 0, latency_us);
}

void AttentionServiceImpl::Observe(const char* method, const absl::Status& status,
                                   size_t request_bytes, size_t response_bytes, int64_t queue_us,
                                   int64_t latency_us) {
  LogCall(options_.log_calls, method, status, request_bytes, response_bytes, queue_us, latency_us);
  metrics_.Record(method, absl::StatusCodeToString(status.code()),
                  static_cast<double>(latency_us) / 1e6);
}

std::string AttentionServiceImpl::RenderMetrics() const {
  return metrics_.Render({
      {"attention_inflight_requests", "Requests computing or waiting for a worker.",
       static_cast<double>(inflight_.load())},
      {"attention_queued_requests", "Requests waiting for a worker.",
       static_cast<double>(pool_->queued())},
      {"attention_reserved_memory_bytes", "Memory estimates of the admitted requests.",
       static_cast<double>(reserved_memory_.load())},
      {"attention_decode_streams", "Decode streams open.", static_cast<double>(streams_.load())},
      {"attention_kv_cache_blocks_used", "KV-cache blocks held by streams.",
       static_cast<double>(kv_pool_->used_blocks())},
      {"attention_kv_cache_blocks_free", "KV-cache blocks free in the budget.",
       static_cast<double>(kv_pool_->total_blocks() - kv_pool_->used_blocks())},
      {"attention_kv_cache_block_bytes", "Bytes per KV-cache block.",
       static_cast<double>(kv_pool_->block_bytes())},
  });
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
                                                          Response* response,
                                                          int64_t memory_estimate, Fn fn,
                                                          bool tiny) {
  if (draining_.load()) return RunInline(method, ctx, request, response, [] { return Draining(); });
  if (absl::Status s = Authenticate(ctx); !s.ok()) {
    return RunInline(method, ctx, request, response, [s] { return s; });
  }
  // Admission: memory first, then a queue slot; refused at once otherwise.
  if (absl::Status s = ReserveMemory(memory_estimate); !s.ok()) {
    return RunInline(method, ctx, request, response, [s] { return s; });
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Clock::time_point arrived = Clock::now();
  ++inflight_;
  auto work = [=, this]() mutable {
    const Clock::time_point started = Clock::now();
    if (options_.test_delay_ms > 0) absl::SleepFor(absl::Milliseconds(options_.test_delay_ms));
    // The core polls this between tiles: a cancelled or expired call stops.
    const CancellationCheck cancelled = [ctx] { return ctx->IsCancelled(); };
    absl::Status status;
    {
      ScopedCancellation scope(&cancelled);
      status = ctx->IsCancelled() ? Abandoned(ctx) : fn(Micros(started - arrived));
    }
    if (status.code() == absl::StatusCode::kCancelled &&
        ctx->deadline() <= std::chrono::system_clock::now()) {
      status = absl::DeadlineExceededError(absl::StrCat(
          "deadline exceeded: the computation was stopped (", status.message(), ")"));
    }
    if (!status.ok()) response->Clear();
    const size_t response_bytes = status.ok() ? response->ByteSizeLong() : 0;
    Observe(method, status, request->ByteSizeLong(), response_bytes, Micros(started - arrived),
            Micros(Clock::now() - arrived));
    // Counted out before the client can see its answer: a GetServerInfo
    // sent after it must not find this call still in flight.
    ReleaseMemory(memory_estimate);
    --inflight_;
    reactor->Finish(ToGrpc(status));
  };
  if (tiny) {
    work();
    return reactor;
  }
  const bool queued = pool_->TrySubmit(std::move(work), options_.max_queued);
  if (!queued) {
    --inflight_;
    ReleaseMemory(memory_estimate);
    const absl::Status s = QueueFull();
    Observe(method, s, request->ByteSizeLong(), 0, 0, 0);
    reactor->Finish(ToGrpc(s));
  }
  return reactor;
}

absl::Status AttentionServiceImpl::QueueFull() const {
  return absl::ResourceExhaustedError(absl::StrCat(
      "queue: ", options_.max_queued, " requests are already waiting for ", options_.workers,
      " workers, the server's limit (--max_queued); retry later"));
}

absl::Status AttentionServiceImpl::Submit(std::function<void()> task) {
  if (!pool_->TrySubmit(std::move(task), options_.max_queued)) return QueueFull();
  return absl::OkStatus();
}

absl::Status AttentionServiceImpl::ReserveMemory(int64_t bytes) {
  const int64_t budget = options_.request_memory_bytes;
  int64_t now = reserved_memory_.load();
  while (true) {
    if (budget > 0 && bytes > budget - now) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "memory: the request needs about ", bytes >> 20, " MiB; ", now >> 20, " of ",
          budget >> 20, " MiB are reserved by requests in flight (--request_memory_mb)"));
    }
    if (reserved_memory_.compare_exchange_weak(now, now + bytes)) return absl::OkStatus();
  }
}

namespace {

// Elements of a wire tensor's shape, or 0 when it is not a valid shape
// (validation will reject it; admission then reserves nothing for it).
int64_t Elements(const pb::Tensor& t) {
  const int64_t n = NumElements(t.shape());
  return n < 0 ? 0 : n;
}

double ElementsOrZero(std::initializer_list<int64_t> dims) {
  double n = 1;
  for (int64_t d : dims) n *= static_cast<double>(std::max<int64_t>(d, 0));
  return n;
}

int64_t Dim(const pb::Tensor& t, int i) { return i < t.shape_size() ? t.shape(i) : 0; }

// A raw call's parsed request, and its response: a head message and the
// tensors that follow it on the wire (RunRaw).
template <typename Request, typename Response>
struct RawCall {
  Request request;
  Response head;
  TensorResponse response{&head};
};

// A FLOAT32 tensor of `shape` at `field` of the response: the buffer the
// core writes into, which goes onto the wire as it is.
float* AddFloatTensor(TensorResponse& response, int field, const std::vector<int64_t>& shape) {
  return static_cast<float*>(response.AddTensor(field, pb::DTYPE_FLOAT32, shape,
                                                static_cast<size_t>(NumElements(shape)) * 4));
}

// `t` encoded as `dtype` (FLOAT32, FLOAT16 or BFLOAT16) at `field`.
void AddEncodedTensor(TensorResponse& response, int field, const Tensor& t, pb::DType dtype) {
  const DType d = ToCoreDType(dtype);
  void* bytes = response.AddTensor(field, dtype, t.shape(),
                                   static_cast<size_t>(t.size()) * DTypeSize(d));
  EncodeFromFloat(d, t.data(), t.size(), bytes);
}


}  // namespace

// Attention under this many FLOPs (a few microseconds on one core) costs
// less than waking a pool thread for it. Counted as SdpaFlops does, but in
// double from unvalidated wire dimensions (no int64 overflow).
constexpr double kTinyFlops = 1e6;

bool AttentionServiceImpl::TinyAttend(const pb::AttendRequest& r) const {
  if (options_.test_delay_ms > 0) return false;  // tests of queueing need the pool
  const pb::Tensor &q = r.query(), &k = r.key(), &v = r.value();
  const double flops = 2 * ElementsOrZero({Dim(q, 0), Dim(q, 1), Dim(q, 2), Dim(k, 2)}) *
                       static_cast<double>(std::max<int64_t>(0, Dim(q, 3) + Dim(v, 3)));
  return flops <= kTinyFlops;
}

int64_t AttentionServiceImpl::EstimateAttend(const pb::AttendRequest& r) const {
  // Shapes that validation will refuse (overflowing, over the tensor limit)
  // reserve nothing: their field-specific error comes first.
  const int64_t limit = options_.max_tensor_elements;
  auto valid = [limit](std::initializer_list<int64_t> dims) {
    const double n = ElementsOrZero(dims);
    return n > 0 && (limit <= 0 || n <= static_cast<double>(limit));
  };
  const pb::Tensor &q = r.query(), &k = r.key(), &v = r.value();
  double floats = 0;
  if (valid({Dim(q, 0), Dim(q, 1), Dim(q, 2), Dim(v, 3)})) {
    floats += ElementsOrZero({Dim(q, 0), Dim(q, 1), Dim(q, 2), Dim(v, 3)});  // output
  }
  if (r.return_weights() && valid({Dim(q, 0), Dim(q, 1), Dim(q, 2), Dim(k, 2)})) {
    floats += ElementsOrZero({Dim(q, 0), Dim(q, 1), Dim(q, 2), Dim(k, 2)});
  }
  if (r.output_dtype() != pb::DTYPE_UNSPECIFIED && r.output_dtype() != pb::DTYPE_FLOAT32) {
    floats *= 1.5;  // computed in float32, then encoded
  }
  for (const pb::Tensor* t : {&q, &k, &v}) {
    const int64_t n = Elements(*t);
    if (t->dtype() != pb::DTYPE_FLOAT32 && (limit <= 0 || n <= limit)) {
      floats += static_cast<double>(n);
    }
  }
  return static_cast<int64_t>(floats * 4 + static_cast<double>(options_.compute_threads) * (4 << 20));
}

int64_t AttentionServiceImpl::EstimateForward(const pb::ForwardRequest& r) const {
  absl::StatusOr<LoadedModule> m = registry_.Get(r.module());
  if (!m.ok()) return 0;  // NOT_FOUND follows
  const int64_t b = Dim(r.query(), 0), lq = Dim(r.query(), 1);
  const int64_t lk = r.has_key() ? Dim(r.key(), 1) : lq;
  if (b <= 0 || lq <= 0 || lk <= 0) return 0;
  const ModuleConfig& c = m->module->config();
  // Inputs or outputs that validation refuses reserve nothing (see above).
  const int64_t limit = options_.max_tensor_elements;
  const double biggest = std::max({ElementsOrZero({b, lq, c.d_model}), ElementsOrZero({b, lk, c.d_model}),
                                   r.return_weights() ? ElementsOrZero({b, NumQueryHeads(c), lq, lk})
                                                      : 0.0});
  if (limit > 0 && biggest > static_cast<double>(limit)) return 0;
  return std::min<int64_t>(INT64_MAX / 2, ForwardWorkingBytes(c, b, lq, lk, r.return_weights()));
}

template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* AttentionServiceImpl::RunInline(const char* method,
                                                          grpc::CallbackServerContext* ctx,
                                                          const Request* request,
                                                          Response* response, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Clock::time_point arrived = Clock::now();
  absl::Status status = draining_.load() ? Draining() : Authenticate(ctx);
  if (status.ok()) status = fn();
  if (!status.ok()) response->Clear();
  Observe(method, status, request->ByteSizeLong(), status.ok() ? response->ByteSizeLong() : 0, 0,
          Micros(Clock::now() - arrived));
  reactor->Finish(ToGrpc(status));
  return reactor;
}

namespace {

// Equal strings, in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() != b.size();
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

absl::Status AttentionServiceImpl::Authenticate(const grpc::CallbackServerContext* ctx) const {
  if (options_.auth_tokens.empty()) return absl::OkStatus();
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  bool valid = false;
  if (it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    constexpr absl::string_view kBearer = "Bearer ";
    if (value.size() > kBearer.size() && value.substr(0, kBearer.size()) == kBearer) {
      const absl::string_view token = value.substr(kBearer.size());
      for (const std::string& t : options_.auth_tokens) valid |= ConstantTimeEquals(token, t);
    }
  }
  if (valid) return absl::OkStatus();
  return absl::UnauthenticatedError(
      it == metadata.end()
          ? "authorization: expected 'authorization: Bearer <token>' metadata, got none"
          : "authorization: the bearer token is not valid");
}

absl::Status AttentionServiceImpl::Draining() {
  return absl::UnavailableError("server: draining for shutdown; retry on another replica");
}

void AttentionServiceImpl::StartDraining() { draining_.store(true); }

template <typename Request, typename Response, typename EstimateFn, typename TinyFn, typename Fn>
grpc::ServerUnaryReactor* AttentionServiceImpl::RunRaw(const char* method,
                                                       grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response,
                                                       EstimateFn estimate, TinyFn tiny, Fn fn) {
  auto call = std::make_shared<RawCall<Request, Response>>();
  if (!ParseRequest(*request, &call->request)) {
    const std::string type = call->request.GetTypeName();
    return RunInline(method, ctx, &call->request, &call->response, [&type] {
      return absl::InvalidArgumentError(absl::StrCat("request: not a valid serialised ", type));
    });
  }
  const Request& req = call->request;
  return RunOnPool(method, ctx, &req, &call->response, estimate(req),
                   [call, response, fn = std::move(fn)](int64_t queue_us) -> absl::Status {
                     ATTN_RETURN_IF_ERROR(fn(call->request, call->head, call->response, queue_us));
                     *response = call->response.Serialize();
                     return absl::OkStatus();
                   },
                   tiny(req));
}

grpc::ServerUnaryReactor* AttentionServiceImpl::Attend(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return RunRaw<pb::AttendRequest, pb::AttendResponse>(
      "Attend", ctx, request, response,
      [this](const pb::AttendRequest& r) { return EstimateAttend(r); },
      [this](const pb::AttendRequest& r) { return TinyAttend(r); },
      [this](const pb::AttendRequest& request_msg, pb::AttendResponse& head,
             TensorResponse& tensors, int64_t queue_us) -> absl::Status {
    const pb::AttendRequest* req = &request_msg;
    pb::AttendResponse* resp = &head;
    // timing.compute_us (the contract): conversion, attention, encoding.
    const Clock::time_point start = Clock::now();
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
    // are written straight into the slices that go onto the wire.
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
    constexpr int kOutput = pb::AttendResponse::kOutputFieldNumber;
    constexpr int kWeights = pb::AttendResponse::kWeightsFieldNumber;
    if (out_dtype == pb::DTYPE_FLOAT32) {
      const MutView4 out = MutView4::Dense(AddFloatTensor(tensors, kOutput, out_shape),
                                           out_shape[0], out_shape[1], out_shape[2],
                                           out_shape[3]);
      float* weights =
          req->return_weights() ? AddFloatTensor(tensors, kWeights, w_shape) : nullptr;
      ATTN_RETURN_IF_ERROR(Sdpa(q, k, v, mask, req->scale(), out, weights));
    } else {
      Tensor out(out_shape), weights;
      if (req->return_weights()) weights = Tensor(w_shape);
      ATTN_RETURN_IF_ERROR(Sdpa(q, k, v, mask, req->scale(), MutView4::Of(out),
                                req->return_weights() ? weights.data() : nullptr));
      AddEncodedTensor(tensors, kOutput, out, out_dtype);
      if (req->return_weights()) AddEncodedTensor(tensors, kWeights, weights, out_dtype);
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
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  return RunRaw<pb::ForwardRequest, pb::ForwardResponse>(
      "Forward", ctx, request, response,
      [this](const pb::ForwardRequest& r) { return EstimateForward(r); },
      [](const pb::ForwardRequest&) { return false; },
      [this](const pb::ForwardRequest& request_msg, pb::ForwardResponse& head,
             TensorResponse& tensors, int64_t queue_us) -> absl::Status {
    const pb::ForwardRequest* req = &request_msg;
    pb::ForwardResponse* resp = &head;
    // timing.compute_us (the contract): conversion, the layer, encoding.
    const Clock::time_point start = Clock::now();
    const int64_t limit = options_.max_tensor_elements;
    ATTN_ASSIGN_OR_RETURN(LoadedModule m, registry_.Get(req->module()));
    const ModuleConfig& config = m.module->config();
    if (!req->has_query()) return absl::InvalidArgumentError("query: required, got nothing");
    ATTN_ASSIGN_OR_RETURN(pb::DType out_dtype, ResolveOutputDType(req->output_dtype(),
                                                                  req->query().dtype(),
                                                                  "output_dtype"));
    // Float32 inputs are read where protobuf parsed them; float32 outputs
    // are written straight into the slices that go onto the wire.
    Tensor query_store, key_store, value_store;
    ForwardInput in;
    ATTN_ASSIGN_OR_RETURN(in.query, RefFromProto(req->query(), "query", kInputSpec, limit,
                                                 &query_store));
    if (req->has_key()) {
      ATTN_ASSIGN_OR_RETURN(in.key,
                            RefFromProto(req->key(), "key", kInputSpec, limit, &key_store));
    }
    if (req->has_value()) {
      ATTN_ASSIGN_OR_RETURN(in.value,
                            RefFromProto(req->value(), "value", kInputSpec, limit, &value_store));
    }
    ATTN_ASSIGN_OR_RETURN(in.mask, MaskFromProto(req->mask(), "mask", limit));
    in.return_weights = req->return_weights();
    // Output and largest intermediate sizes before anything is computed.
    const int64_t b = in.query.dim(0), lq = in.query.dim(1);
    const int64_t lk = in.key.present ? in.key.dim(1) : lq;  // rank 3: kInputSpec
    const std::vector<int64_t> out_shape = {b, lq, OutputDim(config)};
    const std::vector<int64_t> w_shape = {b, NumQueryHeads(config), lq, lk};
    ATTN_RETURN_IF_ERROR(CheckElementLimit("output", out_shape, limit));
    if (in.return_weights) ATTN_RETURN_IF_ERROR(CheckElementLimit("weights", w_shape, limit));
    constexpr int kOutput = pb::ForwardResponse::kOutputFieldNumber;
    constexpr int kWeights = pb::ForwardResponse::kWeightsFieldNumber;
    const bool direct = out_dtype == pb::DTYPE_FLOAT32;
    if (direct) {
      // Allocated before the module validates the shapes: bounded by the
      // limits just checked, and a failed call's response is dropped unsent.
      in.output = AddFloatTensor(tensors, kOutput, out_shape);
      if (in.return_weights) in.weights = AddFloatTensor(tensors, kWeights, w_shape);
    }
    ATTN_ASSIGN_OR_RETURN(ForwardResult r, m.module->Forward(in));
    if (!direct) {
      AddEncodedTensor(tensors, kOutput, r.output, out_dtype);
      if (in.return_weights) AddEncodedTensor(tensors, kWeights, r.weights, out_dtype);
    }
    resp->mutable_timing()->set_compute_us(Micros(Clock::now() - start));
    resp->mutable_timing()->set_queue_us(queue_us);
    resp->mutable_timing()->set_flops(r.flops);
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
  // The decoded weights (or the random init): about the request's size.
  return RunOnPool("LoadModule", ctx, req, resp, static_cast<int64_t>(req->ByteSizeLong()) * 2,
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
    limits->set_max_queued_requests(options_.max_queued);
    limits->set_request_memory_bytes(options_.request_memory_bytes);
    for (const auto& [name, m] : metrics_.Snapshot()) {
      pb::MethodStats* stats = resp->add_methods();
      stats->set_method(name);
      for (const auto& [code, n] : m.codes) (*stats->mutable_codes())[code] = n;
      stats->set_latency_seconds_sum(m.sum_seconds);
    }
    pb::ServerLoad* load = resp->mutable_load();
    load->set_inflight_requests(inflight_.load());
    load->set_queued_requests(pool_->queued());
    load->set_reserved_memory_bytes(reserved_memory_.load());
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
