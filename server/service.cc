#include "server/service.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/cancellation.h"
#include "core/safetensors.h"
#include "core/status_macros.h"
#include "core/threading.h"
#include "server/decode_reactor.h"
#include "server/grpc_status.h"
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

constexpr TensorSpec kQuerySpec{4, "[B, Hq, Lq, Dk]"};
constexpr TensorSpec kKeySpec{4, "[B, Hkv, Lk, Dk]"};
constexpr TensorSpec kValueSpec{4, "[B, Hkv, Lk, Dv]"};
constexpr TensorSpec kInputSpec{3, "[B, L, d_model]"};
constexpr TensorSpec kSinksSpec{1, "[Hq]"};

}  // namespace

const char* ServerVersion() { return "0.1.0"; }

absl::StatusOr<std::unique_ptr<AttentionServiceImpl>> AttentionServiceImpl::Create(
    const ServiceOptions& options) {
  ATTN_ASSIGN_OR_RETURN(std::unique_ptr<KvBlockPool> kv,
                        KvBlockPool::Create(options.kv_cache_bytes, options.kv_block_bytes));
  return std::make_unique<AttentionServiceImpl>(options, std::move(kv));
}

namespace {

// All cores, or OMP_NUM_THREADS when the environment sets it, unless set.
ServiceOptions Resolved(ServiceOptions options) {
  if (options.compute_threads <= 0) options.compute_threads = ComputeThreads();
  return options;
}

AdmissionOptions AdmissionOf(const ServiceOptions& o) {
  AdmissionOptions a;
  a.request_memory_bytes = o.request_memory_bytes;
  a.max_queued = o.max_queued;
  a.workers = o.workers;
  a.max_streams = o.max_streams;
  a.test_delay_ms = o.test_delay_ms;
  return a;
}

}  // namespace

AttentionServiceImpl::AttentionServiceImpl(const ServiceOptions& options,
                                           std::unique_ptr<KvBlockPool> kv)
    : options_(Resolved(options)),
      log_(options_.log_calls),
      auth_(options_.auth_tokens),
      registry_(options_.module_memory_bytes),
      pool_(std::make_unique<WorkPool>(options_.workers, options_.compute_threads)),
      kv_pool_(std::move(kv)),
      admission_(AdmissionOf(options_), pool_.get(), &log_, &metrics_) {}

std::string AttentionServiceImpl::RenderMetrics() const {
  return metrics_.Render({
      {"attention_inflight_requests",
       "Requests (unary calls and Decode chunks) computing or waiting for a worker.",
       static_cast<double>(admission_.inflight())},
      {"attention_queued_requests", "Requests waiting for a worker.",
       static_cast<double>(admission_.queued())},
      {"attention_reserved_memory_bytes", "Memory estimates of the admitted requests.",
       static_cast<double>(admission_.reserved_memory())},
      {"attention_module_memory_bytes", "Weights of the loaded modules.",
       static_cast<double>(registry_.memory_bytes())},
      {"attention_module_memory_limit_bytes", "The loaded modules' budget (0: no limit).",
       static_cast<double>(registry_.memory_budget())},
      {"attention_decode_streams", "Decode streams open.",
       static_cast<double>(admission_.streams())},
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
  DecodeServices services;
  services.auth = &auth_;
  services.registry = &registry_;
  services.kv_pool = kv_pool_.get();
  services.admission = &admission_;
  services.max_tensor_elements = options_.max_tensor_elements;
  services.max_message_bytes = options_.max_message_bytes;
  return new DecodeReactor(services, ctx);
}

AttentionServiceImpl::~AttentionServiceImpl() = default;

grpc::ServerUnaryReactor* AttentionServiceImpl::Refuse(grpc::ServerUnaryReactor* reactor,
                                                       const char* method,
                                                       const absl::Status& status,
                                                       size_t request_bytes) {
  admission_.RecordRefusal(method, status, static_cast<int64_t>(request_bytes));
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* AttentionServiceImpl::RunOnPool(
    const char* method, grpc::CallbackServerContext* ctx, const Request* request,
    Response* response, int64_t memory_estimate, Fn fn, bool tiny) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const size_t request_bytes = request->ByteSizeLong();
  if (absl::Status s = auth_.Check(*ctx); !s.ok()) {
    return Refuse(reactor, method, s, request_bytes);
  }
  absl::StatusOr<std::shared_ptr<Ticket>> ticket =
      admission_.Admit(method, ctx, memory_estimate, static_cast<int64_t>(request_bytes));
  if (!ticket.ok()) {
    reactor->Finish(ToGrpcStatus(ticket.status()));
    return reactor;
  }
  auto work = [t = *ticket, reactor, response, fn = std::move(fn)]() mutable {
    absl::Status status = t->Compute([&] { return fn(t->queue_us()); });
    if (!status.ok()) response->Clear();
    t->Release(status, status.ok() ? static_cast<int64_t>(response->ByteSizeLong()) : 0);
    reactor->Finish(ToGrpcStatus(status));
  };
  if (absl::Status s = admission_.Schedule(*ticket, std::move(work), tiny); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
  }
  return reactor;
}

absl::Status CheckResponseSize(const char* field, double tensor_bytes, int64_t max_message_bytes) {
  // gRPC's send limit is an int; the head and the tensors' shapes take a
  // few hundred bytes beside the data.
  const double limit =
      static_cast<double>(std::min<int64_t>(max_message_bytes, std::numeric_limits<int>::max()));
  if (tensor_bytes + 4096 <= limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s: the response would be about %.0f MiB, over the server's %.0f MiB message limit "
      "(--max_message_mb); ask for less (fewer rows, a 16-bit output_dtype, no weights)",
      field, tensor_bytes / (1 << 20), limit / (1 << 20)));
}

namespace {

// Elements of a wire tensornamespace {

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

using Shape = std::vector<int64_t>;

// Bytes of an output (and weights, when given) encoded as `dtype`.
double ResponseBytes(const Shape& output, const Shape& weights, pb::DType dtype) {
  double n = 1, w = weights.empty() ? 0 : 1;
  for (int64_t d : output) n *= static_cast<double>(d);
  for (int64_t d : weights) w *= static_cast<double>(d);
  return (n + w) * static_cast<double>(DTypeSize(ToCoreDType(dtype)));
}

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
  void* bytes =
      response.AddTensor(field, dtype, t.shape(), static_cast<size_t>(t.size()) * DTypeSize(d));
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
    if (limit > 0 && n > limit) continue;
    // Decoded to float32 unless sent so; rounded copies for bf16 compute.
    if (t->dtype() != pb::DTYPE_FLOAT32) floats += static_cast<double>(n);
    if (r.compute_dtype() == pb::DTYPE_BFLOAT16) floats += static_cast<double>(n);
  }
  return static_cast<int64_t>(floats * 4 +
                              static_cast<double>(options_.compute_threads) * (4 << 20));
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
  const double biggest =
      std::max({ElementsOrZero({b, lq, c.d_model}), ElementsOrZero({b, lk, c.d_model}),
                r.return_weights() ? ElementsOrZero({b, NumQueryHeads(c), lq, lk}) : 0.0});
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
  absl::Status status = admission_.draining() ? Admission::Draining() : auth_.Check(*ctx);
  if (status.ok()) status = fn();
  if (!status.ok()) response->Clear();
  CallRecord record;
  record.method = method;
  record.status = status;
  record.request_bytes = static_cast<int64_t>(request->ByteSizeLong());
  record.response_bytes = status.ok() ? static_cast<int64_t>(response->ByteSizeLong()) : 0;
  record.latency_us = Micros(Clock::now() - arrived);
  admission_.Record(record);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

template <typename Request, typename Response, typename EstimateFn, typename TinyFn, typename Fn>
grpc::ServerUnaryReactor* AttentionServiceImpl::RunRaw(const char* method,
                                                       grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response,
                                                       EstimateFn estimate, TinyFn tiny, Fn fn) {
  auto call = std::make_shared<RawCall<Request, Response>>();
  if (!ParseRequest(*request, &call->request)) {
    // An upload the client's deadline (or a cancel) cut is that, not bad
    // bytes: gRPC may hand over no message, or what had arrived, before it
    // marks the call cancelled.
    const bool expired = ctx->deadline() <= std::chrono::system_clock::now();
    const absl::Status status =
        expired ? absl::DeadlineExceededError("deadline exceeded while the request was arriving")
        : !request->Valid() || ctx->IsCancelled()
            ? absl::CancelledError("call cancelled while the request was arriving")
            : absl::InvalidArgumentError(
                  absl::StrCat("request: not a valid serialised ", call->request.GetTypeName()));
    return Refuse(ctx->DefaultReactor(), method, status, request->Length());
  }
  const Request& req = call->request;
  return RunOnPool(
      method, ctx, &req, &call->response, estimate(req),
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
        ATTN_ASSIGN_OR_RETURN(
            pb::DType out_dtype,
            ResolveOutputDType(req->output_dtype(), req->query().dtype(), "output_dtype"));
        if (!std::isfinite(req->scale())) {
          return absl::InvalidArgumentError(
              absl::StrCat("scale: expected a finite number (0: 1/sqrt(Dk)), got ", req->scale()));
        }
        // Float32 inputs are read where protobuf parsed them; float32 outputs
        // are written straight into the slices that go onto the wire.
        Tensor q_store, k_store, v_store;
        ATTN_ASSIGN_OR_RETURN(View4 q,
                              ViewFromProto(req->query(), "query", kQuerySpec, limit, &q_store));
        ATTN_ASSIGN_OR_RETURN(View4 k, ViewFromProto(req->key(), "key", kKeySpec, limit, &k_store));
        ATTN_ASSIGN_OR_RETURN(View4 v,
                              ViewFromProto(req->value(), "value", kValueSpec, limit, &v_store));
        ATTN_ASSIGN_OR_RETURN(MaskSpec mask, MaskFromProto(req->mask(), "mask", limit));
        ATTN_ASSIGN_OR_RETURN(DType compute,
                              wire::ComputeDTypeFromProto(req->compute_dtype(), "compute_dtype"));
        ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
        Tensor sinks;
        if (req->has_sinks()) {
          ATTN_ASSIGN_OR_RETURN(sinks, TensorFromProto(req->sinks(), "sinks", kSinksSpec, limit));
        }
        ATTN_RETURN_IF_ERROR(ValidateSdpaTerms(req->logit_softcap(), sinks.size(), sinks.data(),
                                               q.dims[1]));
        const std::vector<int64_t> out_shape = {q.dims[0], q.dims[1], q.dims[2], v.dims[3]};
        const std::vector<int64_t> w_shape = {q.dims[0], q.dims[1], q.dims[2], k.dims[2]};
        const std::vector<int64_t> lse_shape = {q.dims[0], q.dims[1], q.dims[2]};
        SdpaTerms terms;
        terms.logit_softcap = req->logit_softcap();
        terms.sinks = req->has_sinks() ? sinks.data() : nullptr;
        if (req->return_lse()) {
          terms.lse = AddFloatTensor(tensors, pb::AttendResponse::kLseFieldNumber, lse_shape);
        }
        ATTN_RETURN_IF_ERROR(CheckElementLimit("output", out_shape, limit));
        if (req->return_weights())
          ATTN_RETURN_IF_ERROR(CheckElementLimit("weights", w_shape, limit));
        ATTN_RETURN_IF_ERROR(CheckResponseSize(
            "output",
            ResponseBytes(out_shape, req->return_weights() ? w_shape : Shape{}, out_dtype),
            options_.max_message_bytes));
        constexpr int kOutput = pb::AttendResponse::kOutputFieldNumber;
        constexpr int kWeights = pb::AttendResponse::kWeightsFieldNumber;
        if (out_dtype == pb::DTYPE_FLOAT32) {
          const MutView4 out =
              MutView4::Dense(AddFloatTensor(tensors, kOutput, out_shape), out_shape[0],
                              out_shape[1], out_shape[2], out_shape[3]);
          float* weights =
              req->return_weights() ? AddFloatTensor(tensors, kWeights, w_shape) : nullptr;
          ATTN_RETURN_IF_ERROR(Sdpa(q, k, v, mask, req->scale(), out, weights, compute, terms));
        } else {
          Tensor out(out_shape), weights;
          if (req->return_weights()) weights = Tensor(w_shape);
          ATTN_RETURN_IF_ERROR(Sdpa(q, k, v, mask, req->scale(), MutView4::Of(out),
                                    req->return_weights() ? weights.data() : nullptr, compute,
                                    terms));
          AddEncodedTensor(tensors, kOutput, out, out_dtype);
          if (req->return_weights()) AddEncodedTensor(tensors, kWeights, weights, out_dtype);
        }
        resp->mutable_timing()->set_compute_us(Micros(Clock::now() - start));
        resp->mutable_timing()->set_queue_us(queue_us);
        resp->mutable_timing()->set_flops(SdpaFlops(q.dims[0], q.dims[1], q.dims[2], k.dims[2],
                                                    q.dims[3], v.dims[3], mask.causal,
                                                    mask.has_keep() ? 0 : mask.sliding_window));
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
        ATTN_ASSIGN_OR_RETURN(
            pb::DType out_dtype,
            ResolveOutputDType(req->output_dtype(), req->query().dtype(), "output_dtype"));
        // Float32 inputs are read where protobuf parsed them; float32 outputs
        // are written straight into the slices that go onto the wire.
        Tensor query_store, key_store, value_store;
        ForwardInput in;
        ATTN_ASSIGN_OR_RETURN(in.query,
                              RefFromProto(req->query(), "query", kInputSpec, limit, &query_store));
        if (req->has_key()) {
          ATTN_ASSIGN_OR_RETURN(in.key,
                                RefFromProto(req->key(), "key", kInputSpec, limit, &key_store));
        }
        if (req->has_value()) {
          ATTN_ASSIGN_OR_RETURN(
              in.value, RefFromProto(req->value(), "value", kInputSpec, limit, &value_store));
        }
        ATTN_ASSIGN_OR_RETURN(in.mask, MaskFromProto(req->mask(), "mask", limit));
        in.return_weights = req->return_weights();
        in.position_offset = req->position_offset();
        // Output and largest intermediate sizes before anything is computed.
        const int64_t b = in.query.dim(0), lq = in.query.dim(1);
        const int64_t lk = in.key.present ? in.key.dim(1) : lq;  // rank 3: kInputSpec
        const std::vector<int64_t> out_shape = {b, lq, OutputDim(config)};
        const std::vector<int64_t> w_shape = {b, NumQueryHeads(config), lq, lk};
        ATTN_RETURN_IF_ERROR(CheckElementLimit("output", out_shape, limit));
        if (in.return_weights) ATTN_RETURN_IF_ERROR(CheckElementLimit("weights", w_shape, limit));
        ATTN_RETURN_IF_ERROR(CheckResponseSize(
            "output", ResponseBytes(out_shape, in.return_weights ? w_shape : Shape{}, out_dtype),
            options_.max_message_bytes));
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
      return absl::InvalidArgumentError(absl::StrCat(
          "name: expected no control characters, got byte 0x", absl::Hex(c, absl::kZeroPad2)));
    }
  }
  return absl::OkStatus();
}

// The path of LoadModuleRequest.file under model_dir: relative, without a
// ".." component, and (links resolved) inside the directory.
absl::StatusOr<std::string> ResolveModelFile(const std::string& model_dir,
                                             const std::string& file) {
  if (model_dir.empty()) {
    return absl::FailedPreconditionError(
        "file: this server has no --model_dir, so it reads no files; send `weights` instead");
  }
  if (file.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("file: expected a path without NUL bytes");
  }
  const std::filesystem::path relative(file);
  if (relative.is_absolute()) {
    return absl::PermissionDeniedError(
        absl::StrCat("file: '", file, "' is absolute; name a file relative to --model_dir"));
  }
  for (const auto& part : relative) {
    if (part == "..") {
      return absl::PermissionDeniedError(
          absl::StrCat("file: '", file,
                       "' has a '..' component; files outside --model_dir are "
                       "not served"));
    }
  }
  std::error_code error;
  const std::filesystem::path root = std::filesystem::canonical(model_dir, error);
  if (error) {  // the server's own path is not the client's business
    return absl::FailedPreconditionError(
        absl::StrCat("file: the server's --model_dir cannot be read: ", error.message()));
  }
  const std::filesystem::path target = std::filesystem::canonical(root / relative, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat("file: '", file, "' not found under --model_dir"));
  }
  // Inside: root's components are a proper prefix of target's.
  auto r = root.begin();
  auto t = target.begin();
  for (; r != root.end() && t != target.end() && *r == *t; ++r, ++t) {
  }
  if (r != root.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("file: '", file, "' leads out of --model_dir (through a link)"));
  }
  const std::string target_s = target.string();
  if (!std::filesystem::is_regular_file(target, error)) {
    return absl::InvalidArgumentError(absl::StrCat("file: '", file, "' is not a regular file"));
  }
  return target_s;
}

// The request's tensors (`weights`, or `file` under model_dir), the
// prefix stripped and Hugging Face names mapped; empty for a random init.
absl::StatusOr<WeightMap> RequestWeights(const pb::LoadModuleRequest& req,
                                         const ModuleConfig& config, int64_t limit,
                                         const std::string& model_dir) {
  if (!req.file().empty() && !req.weights().empty()) {
    return absl::InvalidArgumentError("file: give either `file` or `weights`, not both");
  }
  WeightMap tensors;
  if (!req.file().empty()) {
    ATTN_ASSIGN_OR_RETURN(const std::string path, ResolveModelFile(model_dir, req.file()));
    // A prefix that matches more than the layer (a whole model's tensors,
    // or "layers.1" matching layers 10-19) is refused before any is read.
    const int64_t layer_elements = ParameterCount(config);
    absl::StatusOr<TensorMap> read =
        ReadSafetensors(path, limit, req.weights_prefix(), layer_elements);
    if (!read.ok()) {
      // Name the file as the client gave it, not the server's path.
      const std::string message(read.status().message());
      return absl::Status(
          read.status().code(),
          absl::StrCat("file: ", absl::StrReplaceAll(message, {{path, req.file()}})));
    }
    tensors = *std::move(read);
  } else {
    for (const auto& [name, tensor] : req.weights()) {
      ATTN_ASSIGN_OR_RETURN(
          Tensor t, TensorFromProto(tensor, absl::StrCat("weights['", name, "']"), {}, limit));
      tensors.emplace(name, std::move(t));
    }
    if (tensors.empty()) return tensors;
  }
  return SelectLayerWeights(std::move(tensors), req.weights_prefix(), config);
}

absl::StatusOr<LoadedModule> BuildModule(const pb::LoadModuleRequest& req, int64_t limit,
                                         const ModuleRegistry& registry,
                                         const std::string& model_dir) {
  ATTN_RETURN_IF_ERROR(CheckModuleName(req.name()));
  ATTN_ASSIGN_OR_RETURN(ModuleConfig config, ConfigFromProto(req.config()));
  // Refuse a module larger than the limits before allocating its weights.
  for (const WeightSpec& s : ExpectedWeights(config)) {
    ATTN_RETURN_IF_ERROR(
        CheckElementLimit(absl::StrCat("weights['", s.name, "']"), s.shape, limit));
  }
  ATTN_RETURN_IF_ERROR(registry.CheckFits(req.name(), ModuleBytes(config)));
  ATTN_ASSIGN_OR_RETURN(WeightMap weights, RequestWeights(req, config, limit, model_dir));
  std::unique_ptr<AttentionModule> module;
  if (weights.empty()) {
    ATTN_ASSIGN_OR_RETURN(module, AttentionModule::CreateRandom(config, req.random_seed()));
  } else {
    ATTN_ASSIGN_OR_RETURN(module, AttentionModule::Create(config, std::move(weights)));
  }
  return MakeLoadedModule(req.name(), req.config(), std::move(module));
}

}  // namespace

int64_t AttentionServiceImpl::EstimateLoadModule(const pb::LoadModuleRequest& r) const {
  // The weights as float32 (decoded, or the random init), beside the
  // request; a config that validation refuses reserves nothing.
  absl::StatusOr<ModuleConfig> config = ConfigFromProto(r.config());
  // A file's tensors are read as float32 beside the module's own copy.
  const int64_t weights = config.ok() ? ModuleBytes(*config) * (r.file().empty() ? 1 : 2) : 0;
  const int64_t request = static_cast<int64_t>(r.ByteSizeLong());
  return weights > INT64_MAX / 2 - request ? INT64_MAX / 2 : weights + request;
}

grpc::ServerUnaryReactor* AttentionServiceImpl::LoadModule(grpc::CallbackServerContext* ctx,
                                                           const pb::LoadModuleRequest* req,
                                                           pb::ModuleInfo* resp) {
  return RunOnPool("LoadModule", ctx, req, resp, EstimateLoadModule(*req),
                   [this, req, resp](int64_t) -> absl::Status {
                     ATTN_ASSIGN_OR_RETURN(LoadedModule loaded,
                                           BuildModule(*req, options_.max_tensor_elements,
                                                       registry_, options_.model_dir));
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
  return RunInline("UnloadModule", ctx, req, resp, [&] { return registry_.Remove(req->name()); });
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
    limits->set_module_memory_bytes(registry_.memory_budget());
    for (const auto& [name, m] : metrics_.Snapshot()) {
      pb::MethodStats* stats = resp->add_methods();
      stats->set_method(name);
      for (const auto& [code, n] : m.codes) (*stats->mutable_codes())[code] = n;
      stats->set_latency_seconds_sum(m.sum_seconds);
    }
    pb::ServerLoad* load = resp->mutable_load();
    load->set_inflight_requests(admission_.inflight());
    load->set_queued_requests(admission_.queued());
    load->set_reserved_memory_bytes(admission_.reserved_memory());
    load->set_module_memory_bytes(registry_.memory_bytes());
    limits->set_compute_threads(options_.compute_threads);
    limits->set_kv_cache_bytes(kv_pool_->total_blocks() * kv_pool_->block_bytes());
    limits->set_max_concurrent_streams(options_.max_streams);
    pb::KvCacheUsage* kv = resp->mutable_kv_cache();
    kv->set_block_bytes(kv_pool_->block_bytes());
    kv->set_blocks_total(kv_pool_->total_blocks());
    kv->set_blocks_used(kv_pool_->used_blocks());
    kv->set_streams(admission_.streams());
    for (const char* v : {"self_attention", "mha", "gqa", "mqa", "mla"}) resp->add_variants(v);
    return absl::OkStatus();
  });
}

}  // namespace attention::server
