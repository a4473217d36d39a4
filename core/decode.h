// A streaming-decode session: one module, one paged KV cache of `batch`
// rows, fed chunk by chunk. The session reserves its max_tokens in the KV
// budget when it is created, so an accepted stream is never refused for KV
// memory before max_tokens. A layer with a sliding window W keeps only the
// blocks of its window (kv_cache.h): at most
// cache().plan().WindowBlocks(W, T) during a chunk of T tokens and
// WindowBlocks(W, 0) between chunks, however long the stream; it reserves
// no more than WindowBlocks(W, R) (R = chunk_tokens) up front, so it is
// never refused before max_tokens in chunks of up to R tokens.
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
  // Reserves the KV blocks of max(max_tokens, 1) tokens of every row in
  // `pool` (counted, not allocated: memory comes as tokens are written;
  // kv_cache.h), or with the module's sliding window W at most
  // WindowBlocks(W, R), cached in `kv_dtype` (without it, the module's
  // kv_cache_dtype). max_tokens 0: no limit; past its reservation the
  // stream grows from the shared budget (and a windowed one gives back
  // what it grew by as its tokens leave the window).
  //   INVALID_ARGUMENT    naming "start.batch" (1 .. kMaxConfigDim),
  //                       "start.max_tokens" (>= 0) or
  //                       "start.kv_cache_dtype" (not a KV-cache dtype)
  //   RESOURCE_EXHAUSTED  the reservation does not fit the free budget
  //                       (naming --kv_cache_mb, with need and free), or one
  //                       token of one kv head is larger than a block
  //                       (naming --kv_block_kb)
  static absl::StatusOr<std::unique_ptr<DecodeSession>> Create(
      std::shared_ptr<const AttentionModule> module, int64_t batch, int64_t max_tokens,
      KvBlockPool* pool);
  static absl::StatusOr<std::unique_ptr<DecodeSession>> Create(
      std::shared_ptr<const AttentionModule> module, int64_t batch, int64_t max_tokens,
      DType kv_dtype, KvBlockPool* pool);

  // Appends tokens [B, T, d_model] and returns their outputs.
  //   INVALID_ARGUMENT    "tokens" of the wrong shape
  //   FAILED_PRECONDITION the chunk would pass max_tokens
  //   RESOURCE_EXHAUSTED  past the reservation (max_tokens 0 only), the KV
  //                       budget is full (the cache is unchanged)
  absl::StatusOr<DecodeStepResult> Step(const Tensor& tokens);

  // An upper bound of the bytes Step allocates besides KV blocks for a chunk
  // of t_new (>= 0) tokens at the current length: projections, the
  // attention kernel's per-thread scratch (ComputeThreads() threads; its
  // score rows span the keys the chunk sees, so with a sliding window they
  // stop growing past it) and the output. For admission control, checked
  // before Step; saturates at INT64_MAX instead of overflowing.
  int64_t StepWorkingBytes(int64_t t_new) const;

  // Tokens per row appended so far (the stream's length and the next
  // token's position), whether or not a sliding window has dropped them.
  int64_t cached_tokens() const { return cache_->length(); }
  // Bytes of the head rows the cache holds (cache().head_rows_held() ·
  // layout().HeadRowBytes()): cached_tokens · batch · per-token bytes
  // without a sliding window; with one W, at most about (W + R) tokens'
  // worth, however long the stream (kv_cache.h).
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
