// AttentionService: the attention.v1 contract on gRPC's callback API.
//
// The service only converts and validates; all math is in core/. Calls that
// compute (Attend, Forward, LoadModule, each Decode chunk) take the one
// admission path (server/admission.h) and run on a WorkPool separate from
// gRPC's threads; cheap ones answer inline. Every call writes one line of
// the call log (server/call_log.h) when logging is on.
#ifndef ATTENTION_SERVER_SERVICE_H_
#define ATTENTION_SERVER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>
#include <string>

#include "attention/v1/attention.grpc.pb.h"
#include "core/kv_cache.h"
#include "server/admission.h"
#include "server/auth.h"
#include "server/call_log.h"
#include "server/metrics.h"
#include "server/registry.h"
#include "server/wire.h"
#include "server/work_pool.h"

namespace attention::server {

struct ServiceOptions {
  int64_t max_message_bytes = int64_t{256} << 20;
  int64_t max_tensor_elements = int64_t{64} << 20;  // 256 MiB of float32
  int workers = 2;                                  // requests computing at once
  int compute_threads = 0;  // OpenMP threads per request; 0: all cores (or OMP_NUM_THREADS)
  bool log_calls = true;
  int64_t kv_cache_bytes = int64_t{1} << 30;  // Decode KV budget, all streams together
  int64_t kv_block_bytes = int64_t{64} << 10;  // one paged block
  int max_streams = 64;                        // Decode streams open at once; 0: no limit
  int max_queued = 64;                         // requests waiting for a worker; 0: no limit
  int64_t request_memory_bytes = int64_t{4} << 30;  // admitted requests' estimates together
  int64_t module_memory_bytes = int64_t{4} << 30;   // loaded modules' weights; 0: no limit
  // Root of the .safetensors files LoadModule may name (`file`); empty:
  // LoadModule.file is refused.
  std::string model_dir;
  // Bearer tokens accepted in "authorization: Bearer <token>" metadata;
  // empty: no authentication. The health service is always open.
  std::vector<std::string> auth_tokens;
  // Testing only: every call on the compute pool first sleeps this long, as
  // a slow server would (it holds its worker meanwhile).
  int test_delay_ms = 0;
};

// Attend and Forward are raw methods: their requests are parsed here and
// their responses serialised here, so that output tensors go onto the wire
// from the buffers the core wrote (server/wire.h). The bytes on the wire are
// the contract's messages, as for every other method.
using ServiceBase = ::attention::v1::AttentionService::WithRawCallbackMethod_Attend<
    ::attention::v1::AttentionService::WithRawCallbackMethod_Forward<
        ::attention::v1::AttentionService::CallbackService>>;

class AttentionServiceImpl final : public ServiceBase {
 public:
  explicit AttentionServiceImpl(const ServiceOptions& options, std::unique_ptr<KvBlockPool> kv);
  // Fails (INVALID_ARGUMENT) for an unusable KV block size.
  static absl::StatusOr<std::unique_ptr<AttentionServiceImpl>> Create(const ServiceOptions& options);
  ~AttentionServiceImpl() override;

  ModuleRegistry& registry() { return registry_; }
  // Admission state: calls in flight, reserved memory, streams, draining.
  Admission& admission() { return admission_; }
  const ServiceOptions& options() const { return options_; }
  // The Prometheus text of the counters and the live gauges.
  std::string RenderMetrics() const;

  // A serialised AttendRequest in, a serialised AttendResponse out.
  grpc::ServerUnaryReactor* Attend(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* LoadModule(grpc::CallbackServerContext* ctx,
                                       const ::attention::v1::LoadModuleRequest* request,
                                       ::attention::v1::ModuleInfo* response) override;
  grpc::ServerUnaryReactor* ListModules(grpc::CallbackServerContext* ctx,
                                        const ::attention::v1::ListModulesRequest* request,
                                        ::attention::v1::ListModulesResponse* response) override;
  grpc::ServerUnaryReactor* UnloadModule(grpc::CallbackServerContext* ctx,
                                         const ::attention::v1::UnloadModuleRequest* request,
                                         ::attention::v1::UnloadModuleResponse* response) override;
  // A serialised ForwardRequest in, a serialised ForwardResponse out.
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<::attention::v1::DecodeRequest, ::attention::v1::DecodeResponse>*
  Decode(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Estimate(grpc::CallbackServerContext* ctx,
                                     const ::attention::v1::EstimateRequest* request,
                                     ::attention::v1::EstimateResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx,
                                          const ::attention::v1::GetServerInfoRequest* request,
                                          ::attention::v1::ServerInfo* response) override;

 private:
  // Runs fn(queue_us) through admission (auth, then a ticket reserving
  // `memory_estimate`) on the compute pool, or, when `tiny` (less work than
  // handing it to a pool thread costs), right away on the gRPC thread that
  // received it.
  template <typename Request, typename Response, typename Fn>
  grpc::ServerUnaryReactor* RunOnPool(const char* method, grpc::CallbackServerContext* ctx,
                                      const Request* request, Response* response,
                                      int64_t memory_estimate, Fn fn, bool tiny = false);
  // A raw method (Attend, Forward): parses `request` as a Request
  // (INVALID_ARGUMENT naming the type if it is not one, or the cancellation
  // it is when the client's deadline cut the upload), then as RunOnPool
  // with estimate(request) and tiny(request), running
  // fn(request, head, tensors, queue_us); on success `response` is the head
  // and the tensors, serialised (server/wire.h).
  template <typename Request, typename Response, typename EstimateFn, typename TinyFn, typename Fn>
  grpc::ServerUnaryReactor* RunRaw(const char* method, grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                                   EstimateFn estimate, TinyFn tiny, Fn fn);
  // A call that computes nothing: auth, fn, the log line, on this thread.
  template <typename Request, typename Response, typename Fn>
  grpc::ServerUnaryReactor* RunInline(const char* method, grpc::CallbackServerContext* ctx,
                                      const Request* request, Response* response, Fn fn);
  // Finishes `reactor` with `status`, after logging it as `method`'s.
  grpc::ServerUnaryReactor* Refuse(grpc::ServerUnaryReactor* reactor, const char* method,
                                   const absl::Status& status, size_t request_bytes);
  int64_t EstimateAttend(const ::attention::v1::AttendRequest& r) const;
  bool TinyAttend(const ::attention::v1::AttendRequest& r) const;
  int64_t EstimateForward(const ::attention::v1::ForwardRequest& r) const;
  int64_t EstimateLoadModule(const ::attention::v1::LoadModuleRequest& r) const;

  ServiceOptions options_;
  CallLog log_;
  Metrics metrics_;
  TokenAuth auth_;
  ModuleRegistry registry_;
  std::unique_ptr<WorkPool> pool_;
  std::unique_ptr<KvBlockPool> kv_pool_;
  Admission admission_;
};

// Version of this server.
const char* ServerVersion();

// RESOURCE_EXHAUSTED naming `field` and --max_message_mb when a response
// whose tensors take `tensor_bytes` (as a double: wire dimensions may
// overflow int64) would pass `max_message_bytes` (gRPC drops such a
// response after it was computed).
absl::Status CheckResponseSize(const char* field, double tensor_bytes, int64_t max_message_bytes);

}  // namespace attention::server

#endif  // ATTENTION_SERVER_SERVICE_H_
