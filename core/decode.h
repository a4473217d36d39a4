// A streaming-decode session: one module, one paged KV cache of `batch`
// rows, fed chunk by chunk.
#ifndef ATTENTION_CORE_DECODE_H_
#define ATTENTION_CORE_DECODE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/kv_cache.h"
#include "core/module.h"

namespace attention {

struct DecodeStepResult {
  Tensor output;  // [B, T, OutputDim]
  double flops = 0;
};

class DecodeSession {
 public:
  // max_tokens 0: bounded only by the KV budget. INVALID_ARGUMENT naming
  // "start.batch" / "start.max_tokens" for bad values.
  static absl::StatusOr<std::unique_ptr<DecodeSession>> Create(
      std::shared_ptr<const AttentionModule> module, int64_t batch, int64_t max_tokens,
      KvBlockPool* pool);

  // Appends tokens [B, T, d_model] and returns their outputs.
  //   INVALID_ARGUMENT    "tokens" of the wrong shape
  //   FAILED_PRECONDITION the chunk would pass max_tokens
  //   RESOURCE_EXHAUSTED  the KV budget is full (the cache is unchanged)
  absl::StatusOr<DecodeStepResult> Step(const Tensor& tokens);

  int64_t cached_tokens() const { return cache_->length(); }
  // Bytes the cache's tokens occupy: cached_tokens · batch · per-token bytes.
  int64_t kv_cache_bytes() const;
  const PagedKvCache& cache() const { return *cache_; }
  // For benchmarks: the cache itself (e.g. to fill it without computing).
  PagedKvCache& mutable_cache() { return *cache_; }
  const AttentionModule& module() const { return *module_; }

 private:
  DecodeSession(std::shared_ptr<const AttentionModule> module, int64_t max_tokens,
                std::unique_ptr<PagedKvCache> cache)
      : module_(std::move(module)), max_tokens_(max_tokens), cache_(std::move(cache)) {}

  std::shared_ptr<const AttentionModule> module_;
  int64_t max_tokens_;
  std::unique_ptr<PagedKvCache> cache_;
};

}  // namespace attention

#endif  // ATTENTION_CORE_DECODE_H_
