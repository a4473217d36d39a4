// The Decode bidirectional stream: `start`, then chunks of tokens, one
// response per chunk. The stream owns a DecodeSession (and so its KV cache
// blocks) from `start` until the stream ends, however it ends: OnDone frees
// it. Each chunk is a computing call of its own through admission (a
// ticket: memory reserved, counted in flight, the stream's deadline and
// cancellation installed, logged as "DecodeChunk"); chunks of one stream
// compute one at a time, in order. The stream holds a stream slot
// (--max_streams) from `start`, and logs one "Decode" line when it ends.
#ifndef ATTENTION_SERVER_DECODE_REACTOR_H_
#define ATTENTION_SERVER_DECODE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "attention/v1/attention.pb.h"
#include "core/decode.h"
#include "server/admission.h"
#include "server/auth.h"
#include "server/registry.h"

namespace attention::server {

// What a Decode stream uses of the service; all must outlive the stream.
struct DecodeServices {
  const TokenAuth* auth = nullptr;
  const ModuleRegistry* registry = nullptr;
  KvBlockPool* kv_pool = nullptr;
  Admission* admission = nullptr;
  int64_t max_tensor_elements = 0;  // 0: no limit
  int64_t max_message_bytes = 0;
};

class DecodeReactor final
    : public grpc::ServerBidiReactor<::attention::v1::DecodeRequest,
                                     ::attention::v1::DecodeResponse> {
 public:
  DecodeReactor(const DecodeServices& services, grpc::CallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override {}
  void OnDone() override;

 private:
  absl::Status HandleStart(const ::attention::v1::DecodeStart& start);
  // Admits the chunk in request_ (`request_bytes` on the wire) and
  // schedules it on the compute pool.
  void RunChunk(int64_t request_bytes);
  // The chunk's computation, filling response_.
  absl::Status Step(int64_t queue_us);
  // Ends the stream with `status` (once).
  void End(const absl::Status& status);

  const DecodeServices services_;
  grpc::CallbackServerContext* ctx_;
  ::attention::v1::DecodeRequest request_;
  ::attention::v1::DecodeResponse response_;
  std::unique_ptr<DecodeSession> session_;
  bool counted_ = false;  // holds one of the stream slots
  int64_t request_bytes_ = 0, response_bytes_ = 0;  // of the whole stream
  const std::chrono::steady_clock::time_point opened_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_DECODE_REACTOR_H_
