// The Decode bidirectional stream: `start`, then chunks of tokens, one
// response per chunk. The stream owns a DecodeSession (and so its KV cache
// blocks) from `start` until the stream ends, however it ends: OnDone frees
// it. Chunks compute on the service's pool, one at a time per stream.
#ifndef ATTENTION_SERVER_DECODE_REACTOR_H_
#define ATTENTION_SERVER_DECODE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>

#include "absl/base/thread_annotations.h"
#include <mutex>
#include "attention/v1/attention.pb.h"
#include "core/decode.h"

namespace attention::server {

class AttentionServiceImpl;

class DecodeReactor final
    : public grpc::ServerBidiReactor<::attention::v1::DecodeRequest,
                                     ::attention::v1::DecodeResponse> {
 public:
  DecodeReactor(AttentionServiceImpl* service, grpc::CallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override {}
  void OnDone() override;

 private:
  absl::Status HandleStart(const ::attention::v1::DecodeStart& start);
  void RunChunk();
  // Ends the stream with `status` (once).
  void End(const absl::Status& status);

  AttentionServiceImpl* service_;
  grpc::CallbackServerContext* ctx_;
  ::attention::v1::DecodeRequest request_;
  ::attention::v1::DecodeResponse response_;
  std::unique_ptr<DecodeSession> session_;
  bool counted_ = false;  // holds one of the service's stream slots
  const std::chrono::steady_clock::time_point opened_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_DECODE_REACTOR_H_
