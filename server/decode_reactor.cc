#include "server/decode_reactor.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/service.h"
#include "wire/convert.h"

namespace attention::server {

namespace pb = ::attention::v1;

using wire::CheckElementLimit;
using wire::TensorFromProto;
using wire::TensorToProto;

namespace {

using Clock = std::chrono::steady_clock;

int64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

DecodeReactor::DecodeReactor(AttentionServiceImpl* service, grpc::CallbackServerContext* ctx)
    : service_(service), ctx_(ctx) {
  StartRead(&request_);
}

void DecodeReactor::End(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
    ended_ = true;
  }
  service_->LogStream(status, session_ != nullptr ? session_->cached_tokens() : 0,
                      Micros(Clock::now() - opened_));
  Finish(status.ok() ? grpc::Status::OK
                     : grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                                    std::string(status.message())));
}

void DecodeReactor::OnDone() {
  session_.reset();  // the KV blocks go back to the budget here
  if (counted_) service_->ReleaseStream();
  delete this;
}

absl::Status DecodeReactor::HandleStart(const pb::DecodeStart& start) {
  if (session_ != nullptr) {
    return absl::FailedPreconditionError("start: the stream has already started");
  }
  ATTN_RETURN_IF_ERROR(service_->Authenticate(ctx_));
  ATTN_ASSIGN_OR_RETURN(LoadedModule m, service_->registry().Get(start.module()));
  ATTN_RETURN_IF_ERROR(service_->AcquireStream());
  counted_ = true;
  ATTN_ASSIGN_OR_RETURN(session_, DecodeSession::Create(m.module, start.batch(),
                                                        start.max_tokens(), &service_->kv_pool()));
  return absl::OkStatus();
}

void DecodeReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client closed its side (or went away): the stream is over
    End(ctx_->IsCancelled() ? absl::CancelledError("stream cancelled") : absl::OkStatus());
    return;
  }
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
      RunChunk();
      return;
    default:
      return End(absl::InvalidArgumentError("step: expected start or tokens, got neither"));
  }
}

void DecodeReactor::RunChunk() {
  const Clock::time_point arrived = Clock::now();
  const absl::Status queued = service_->Submit([this, arrived] {
    const Clock::time_point started = Clock::now();
    if (ctx_->IsCancelled()) return End(absl::CancelledError("stream cancelled"));
    const pb::Tensor& tokens = request_.tokens();
    const int64_t limit = service_->options().max_tensor_elements;
    absl::Status status = [&]() -> absl::Status {
      ATTN_ASSIGN_OR_RETURN(Tensor x,
                            TensorFromProto(tokens, "tokens", {3, "[B, T, d_model]"}, limit));
      ATTN_RETURN_IF_ERROR(CheckElementLimit(
          "output", {x.dim(0), x.dim(1), OutputDim(session_->module().config())}, limit));
      ATTN_ASSIGN_OR_RETURN(DecodeStepResult r, session_->Step(x));
      response_.Clear();
      TensorToProto(r.output, tokens.dtype(), response_.mutable_output());
      response_.set_cached_tokens(session_->cached_tokens());
      response_.set_kv_cache_bytes(session_->kv_cache_bytes());
      pb::Timing* timing = response_.mutable_timing();
      timing->set_queue_us(Micros(started - arrived));
      timing->set_compute_us(Micros(Clock::now() - started));
      timing->set_flops(r.flops);
      return absl::OkStatus();
    }();
    if (!status.ok()) return End(status);
    StartWrite(&response_);
  });
  if (!queued.ok()) End(queued);
}

void DecodeReactor::OnWriteDone(bool ok) {
  if (!ok) return End(absl::CancelledError("stream broken while writing"));
  StartRead(&request_);
}

}  // namespace attention::server
