// Admission: the one path every computing call takes, a unary call (Attend,
// Forward, LoadModule) or one Decode chunk alike.
//
//   Admit     refuses new calls while draining (UNAVAILABLE), and any call whose memory
//             estimate does not fit what is left of --request_memory_mb
//             (RESOURCE_EXHAUSTED); otherwise reserves it, counts the call in
//             flight and returns its Ticket.
//   Schedule  queues the ticket's work for a compute worker (RESOURCE_EXHAUSTED
//             past --max_queued), or runs it at once on this thread.
//   Compute   (on the worker) runs the work with the call's deadline and
//             cancellation installed for the core, which polls them between
//             tiles; an abandoned call does not start.
//   Release   frees the reservation, leaves the in-flight count, writes the
//             call's log line and records it in the metrics — before the
//             client can see the answer.
// Decode streams also take a stream slot (--max_streams) for their life.
//
// Thread-safe.
#ifndef ATTENTION_SERVER_ADMISSION_H_
#define ATTENTION_SERVER_ADMISSION_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/call_log.h"
#include "server/metrics.h"
#include "server/work_pool.h"

namespace attention::server {

struct AdmissionOptions {
  int64_t request_memory_bytes = 0;  // all admitted calls' estimates; 0: no limit
  int max_queued = 0;                // calls waiting for a worker; 0: no limit
  int workers = 1;                   // for messages
  int max_streams = 0;               // Decode streams open at once; 0: no limit
  int test_delay_ms = 0;             // testing: each Compute first sleeps this long
};

class Admission;

// One admitted call. Obtained from Admission::Admit; shared by the reply
// path and the queued work, released once.
class Ticket {
 public:
  ~Ticket();  // frees what an unreleased ticket holds (without a log line)
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;

  // Runs `fn` on this thread with the call's cancellation installed
  // (core/cancellation.h). A call whose client went away or whose deadline
  // passed before it started is CANCELLED / DEADLINE_EXCEEDED without
  // running `fn`; a computation stopped after its deadline passed is
  // DEADLINE_EXCEEDED.
  absl::Status Compute(const std::function<absl::Status()>& fn);

  // Microseconds between admission and the start of Compute.
  int64_t queue_us() const { return queue_us_; }
  int64_t memory_bytes() const { return memory_bytes_; }

  // Ends the call: frees its memory, counts it out, logs and records it
  // (`tokens` >= 0 for Decode chunks). Later calls do nothing.
  void Release(const absl::Status& status, int64_t response_bytes, int64_t tokens = -1);

 private:
  friend class Admission;
  using Clock = std::chrono::steady_clock;
  Ticket(Admission* admission, const char* method, grpc::CallbackServerContext* ctx,
         int64_t memory_bytes, int64_t request_bytes)
      : admission_(admission), method_(method), ctx_(ctx), memory_bytes_(memory_bytes),
        request_bytes_(request_bytes) {}
  bool Free();  // false when already freed

  Admission* admission_;
  const char* method_;
  grpc::CallbackServerContext* ctx_;
  const int64_t memory_bytes_;
  const int64_t request_bytes_;
  const Clock::time_point admitted_ = Clock::now();
  int64_t queue_us_ = 0;
  std::atomic<bool> released_{false};
};

class Admission {
 public:
  // `pool`, `log` and `metrics` must outlive this.
  Admission(const AdmissionOptions& options, WorkPool* pool, const CallLog* log,
            Metrics* metrics);

  // What a call is to a draining server: new calls are refused; a chunk of
  // a stream opened before the drain goes on, as calls in flight do.
  enum class Kind { kNewCall, kChunkOfOpenStream };

  // Admits a computing call of `method` on `ctx` that needs about
  // `memory_bytes` (refusals are logged and recorded under `method`, with
  // `request_bytes`).
  absl::StatusOr<std::shared_ptr<Ticket>> Admit(const char* method,
                                                grpc::CallbackServerContext* ctx,
                                                int64_t memory_bytes, int64_t request_bytes,
                                                Kind kind = Kind::kNewCall);

  // Runs `work` on a compute worker, or right away on this thread when
  // `here` (work smaller than the hand-off). A full queue releases `ticket`
  // with RESOURCE_EXHAUSTED naming --max_queued and returns that status
  // without running `work`.
  absl::Status Schedule(const std::shared_ptr<Ticket>& ticket, std::function<void()> work,
                        bool here = false);

  // Logs and records a call that computes nothing (no ticket).
  void Record(const CallRecord& record);
  // Logs and records `method`'s call of `request_bytes` refused with
  // `status` before computing.
  void RecordRefusal(const char* method, const absl::Status& status, int64_t request_bytes);

  // A Decode stream's slot: UNAVAILABLE while draining, RESOURCE_EXHAUSTED
  // past --max_streams. CloseStream gives it back.
  absl::Status OpenStream();
  void CloseStream() { --streams_; }

  // From now on OpenStream and Admit of new calls refuse with Draining().
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  static absl::Status Draining();

  int inflight() const { return inflight_.load(); }
  int streams() const { return streams_.load(); }
  int queued() const { return pool_->queued(); }
  int64_t reserved_memory() const { return reserved_memory_.load(); }
  const AdmissionOptions& options() const { return options_; }

 private:
  friend class Ticket;
  absl::Status Reserve(int64_t bytes);
  void Unreserve(int64_t bytes) { reserved_memory_ -= bytes; }

  const AdmissionOptions options_;
  WorkPool* pool_;
  const CallLog* log_;
  Metrics* metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<int> inflight_{0};
  std::atomic<int> streams_{0};
  std::atomic<int64_t> reserved_memory_{0};
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_ADMISSION_H_
