#include "server/decode_reactor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/grpc_status.h"
#include "server/service.h"
#include "wire/convert.h"

namespace attention::server {

namespace pb = ::attention::v1;

using wire::CheckElementLimit;
using wire::TensorFromProto;
using wire::TensorToProto;
using wire::ToCoreDType;

namespace {

using Clock = std::chrono::steady_clock;

int64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

DecodeReactor::DecodeReactor(const DecodeServices& services, grpc::CallbackServerContext* ctx)
    : services_(services), ctx_(ctx) {
  StartRead(&request_);
}

void DecodeReactor::End(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
    ended_ = true;
  }
  CallRecord record;
  record.method = "Decode";
  record.status = status;
  record.request_bytes = request_bytes_;
  record.response_bytes = response_bytes_;
  record.latency_us = Micros(Clock::now() - opened_);
  record.tokens = session_ != nullptr ? session_->cached_tokens() : 0;
  services_.admission->Record(record);
  Finish(ToGrpcStatus(status));
}

void DecodeReactor::OnDone() {
  session_.reset();  // the KV blocks go back to the budget here
  if (counted_) services_.admission->CloseStream();
  delete this;
}

absl::Status DecodeReactor::HandleStart(const pb::DecodeStart& start) {
  if (session_ != nullptr) {
    return absl::FailedPreconditionError("start: the stream has already started");
  }
  ATTN_RETURN_IF_ERROR(services_.auth->Check(*ctx_));
  ATTN_ASSIGN_OR_RETURN(LoadedModule m, services_.registry->Get(start.module()));
  DType kv_dtype = m.module->config().kv_cache_dtype;
  if (start.kv_cache_dtype() != pb::DTYPE_UNSPECIFIED) {
    ATTN_ASSIGN_OR_RETURN(
        kv_dtype, wire::KvCacheDTypeFromProto(start.kv_cache_dtype(), "start.kv_cache_dtype"));
  }
  ATTN_RETURN_IF_ERROR(services_.admission->OpenStream());
  counted_ = true;
  ATTN_ASSIGN_OR_RETURN(session_, DecodeSession::Create(m.module, start.batch(), start.max_tokens(),
                                                        kv_dtype, services_.kv_pool));
  return absl::OkStatus();
}

void DecodeReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client closed its side (or went away): the stream is over
    End(ctx_->IsCancelled() ? absl::CancelledError("stream cancelled") : absl::OkStatus());
    return;
  }
  const int64_t bytes = static_cast<int64_t>(request_.ByteSizeLong());
  request_bytes_ += bytes;
  switch (request_.step_case()) {
    case pb::DecodeRequest::kStart: {
      const absl::Status s = HandleStart(request_.start());
      if (!s.ok()) return End(s);
      StartRead(&request_);
      return;
    }
    case pb::DecodeRequest::kTokens:
      if (session_ == nullptr) {
        return End(absl::FailedPreconditionError(
            "tokens: sent before start (the first message must be start)"));
      }
      RunChunk(bytes);
      return;
    default:
      return End(absl::InvalidArgumentError("step: expected start or tokens, got neither"));
  }
}

void DecodeReactor::RunChunk(int64_t request_bytes) {
  const pb::Tensor& tokens = request_.tokens();
  // T as sent; a shape that validation refuses reserves little (its error
  // comes from Step).
  const int64_t t_new =
      tokens.shape_size() == 3 ? std::clamp<int64_t>(tokens.shape(1), 0, kMaxConfigDim) : 0;
  absl::StatusOr<std::shared_ptr<Ticket>> ticket =
      services_.admission->Admit("DecodeChunk", ctx_, session_->StepWorkingBytes(t_new),
                                 request_bytes, Admission::Kind::kChunkOfOpenStream);
  if (!ticket.ok()) return End(ticket.status());
  const absl::Status scheduled = services_.admission->Schedule(*ticket, [this, t = *ticket] {
    const absl::Status status = t->Compute([&] { return Step(t->queue_us()); });
    const int64_t bytes = status.ok() ? static_cast<int64_t>(response_.ByteSizeLong()) : 0;
    t->Release(status, bytes, status.ok() ? response_.output().shape(1) : 0);
    if (!status.ok()) return End(status);
    response_bytes_ += bytes;
    StartWrite(&response_);
  });
  if (!scheduled.ok()) End(scheduled);
}

absl::Status DecodeReactor::Step(int64_t queue_us) {
  const Clock::time_point started = Clock::now();
  const pb::Tensor& tokens = request_.tokens();
  const int64_t limit = services_.max_tensor_elements;
  ATTN_ASSIGN_OR_RETURN(Tensor x, TensorFromProto(tokens, "tokens", {3, "[B, T, d_model]"}, limit));
  const pb::DType out_dtype = tokens.dtype();  // outputs come back as the tokens came
  const std::vector<int64_t> out_shape = {x.dim(0), x.dim(1),
                                          OutputDim(session_->module().config())};
  ATTN_RETURN_IF_ERROR(CheckElementLimit("output", out_shape, limit));
  ATTN_RETURN_IF_ERROR(CheckResponseSize(
      "output", static_cast<double>(NumElements(out_shape)) * DTypeSize(ToCoreDType(out_dtype)),
      services_.max_message_bytes));
  ATTN_ASSIGN_OR_RETURN(DecodeStepResult r, session_->Step(x));
  response_.Clear();
  TensorToProto(r.output, out_dtype, response_.mutable_output());
  response_.set_cached_tokens(session_->cached_tokens());
  response_.set_kv_cache_bytes(session_->kv_cache_bytes());
  pb::Timing* timing = response_.mutable_timing();
  timing->set_queue_us(queue_us);
  timing->set_compute_us(Micros(Clock::now() - started));
  timing->set_flops(r.flops);
  return absl::OkStatus();
}

void DecodeReactor::OnWriteDone(bool ok) {
  if (!ok) return End(absl::CancelledError("stream broken while writing"));
  StartRead(&request_);
}

}  // namespace attention::server
