#include "server/admission.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/cancellation.h"

namespace attention::server {
namespace {

int64_t Micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

bool PastDeadline(const grpc::CallbackServerContext* ctx) {
  return ctx->deadline() <= std::chrono::system_clock::now();
}

}  // namespace

Ticket::~Ticket() { Free(); }

bool Ticket::Free() {
  if (released_.exchange(true)) return false;
  admission_->Unreserve(memory_bytes_);
  --admission_->inflight_;
  return true;
}

absl::Status Ticket::Compute(const std::function<absl::Status()>& fn) {
  queue_us_ = Micros(Clock::now() - admitted_);
  const int delay_ms = admission_->options_.test_delay_ms;
  if (delay_ms > 0) absl::SleepFor(absl::Milliseconds(delay_ms));
  if (ctx_->IsCancelled()) {
    return PastDeadline(ctx_)
               ? absl::DeadlineExceededError("deadline exceeded before the computation started")
               : absl::CancelledError("call cancelled before the computation started");
  }
  const CancellationCheck cancelled = [ctx = ctx_] { return ctx->IsCancelled(); };
  absl::Status status;
  {
    ScopedCancellation scope(&cancelled);
    status = fn();
  }
  if (status.code() == absl::StatusCode::kCancelled && PastDeadline(ctx_)) {
    status = absl::DeadlineExceededError(
        absl::StrCat("deadline exceeded: the computation was stopped (", status.message(), ")"));
  }
  return status;
}

void Ticket::Release(const absl::Status& status, int64_t response_bytes, int64_t tokens) {
  CallRecord record;
  record.method = method_;
  record.status = status;
  record.request_bytes = request_bytes_;
  record.response_bytes = status.ok() ? response_bytes : 0;
  record.queue_us = queue_us_;
  record.latency_us = Micros(Clock::now() - admitted_);
  record.tokens = tokens;
  // Counted out before the reply: a GetServerInfo sent after the client has
  // its answer must not find this call still in flight.
  if (Free()) admission_->Record(record);
}

Admission::Admission(const AdmissionOptions& options, WorkPool* pool, const CallLog* log,
                     Metrics* metrics)
    : options_(options), pool_(pool), log_(log), metrics_(metrics) {}

absl::Status Admission::Draining() {
  return absl::UnavailableError("server: draining for shutdown; retry on another replica");
}

absl::Status Admission::Reserve(int64_t bytes) {
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

absl::StatusOr<std::shared_ptr<Ticket>> Admission::Admit(const char* method,
                                                         grpc::CallbackServerContext* ctx,
                                                         int64_t memory_bytes,
                                                         int64_t request_bytes, Kind kind) {
  absl::Status refused =
      draining() && kind == Kind::kNewCall ? Draining() : Reserve(memory_bytes);
  if (!refused.ok()) {
    RecordRefusal(method, refused, request_bytes);
    return refused;
  }
  ++inflight_;
  return std::shared_ptr<Ticket>(new Ticket(this, method, ctx, memory_bytes, request_bytes));
}

absl::Status Admission::Schedule(const std::shared_ptr<Ticket>& ticket,
                                 std::function<void()> work, bool here) {
  if (here) {
    work();
    return absl::OkStatus();
  }
  if (pool_->TrySubmit(std::move(work), options_.max_queued)) return absl::OkStatus();
  const absl::Status full = absl::ResourceExhaustedError(absl::StrCat(
      "queue: ", options_.max_queued, " requests are already waiting for ", options_.workers,
      " workers, the server's limit (--max_queued); retry later"));
  ticket->Release(full, 0);
  return full;
}

void Admission::RecordRefusal(const char* method, const absl::Status& status,
                              int64_t request_bytes) {
  CallRecord record;
  record.method = method;
  record.status = status;
  record.request_bytes = request_bytes;
  Record(record);
}

void Admission::Record(const CallRecord& record) {
  log_->Write(record);
  metrics_->Record(record.method, absl::StatusCodeToString(record.status.code()),
                   static_cast<double>(record.latency_us) / 1e6);
}

absl::Status Admission::OpenStream() {
  if (draining()) return Draining();
  const int now = ++streams_;
  if (options_.max_streams > 0 && now > options_.max_streams) {
    --streams_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "start: ", options_.max_streams,
        " Decode streams are open, the server's limit (--max_streams)"));
  }
  return absl::OkStatus();
}

}  // namespace attention::server
