// KV caches for streaming decode: a server-wide budget of fixed-size blocks
// and the paged cache of one stream, grown block by block without copying.
//
// Per token and batch row, a cache holds what the variant needs and no more
// (float32):
//   mha / gqa / mqa / self_attention   K and V of the Hkv heads
//   mla                                 the latent [RMSNorm(c_KV) | RoPE(k_rope)]
//                                       (kv_lora_rank + qk_rope_head_dim); values
//                                       are its first kv_lora_rank columns
// A block holds tokens_per_block consecutive tokens of one batch row and one
// kv head, so a head's keys are read in long contiguous runs:
//   K [tokens_per_block][k_width], then (unless v_in_k)
//   V [tokens_per_block][v_width].
#ifndef ATTENTION_CORE_KV_CACHE_H_
#define ATTENTION_CORE_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include <mutex>
#include "core/config.h"
#include "core/tensor.h"

namespace attention {

struct KvLayout {
  int64_t heads = 1;    // Hkv (1 for mla)
  int64_t k_width = 0;  // per head: Dk (mla: kv_lora_rank + qk_rope_head_dim)
  int64_t v_width = 0;  // per head: Dv (mla: kv_lora_rank)
  bool v_in_k = false;  // mla: values are the first v_width columns of the key rows

  int64_t FloatsPerToken() const { return heads * FloatsPerHeadToken(); }
  int64_t FloatsPerHeadToken() const { return k_width + (v_in_k ? 0 : v_width); }
};

// The cache layout of a valid config; FloatsPerToken() · 4 equals
// KvCacheBytesPerToken(config).
KvLayout CacheLayout(const ModuleConfig& config);

// A fixed budget of equal blocks shared by all streams. Thread-safe.
class KvBlockPool {
 public:
  // INVALID_ARGUMENT unless 1 KiB <= block_bytes and block_bytes % 64 == 0;
  // the pool holds budget_bytes / block_bytes blocks (possibly 0).
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(int64_t budget_bytes,
                                                             int64_t block_bytes);
  ~KvBlockPool();

  // A block of block_bytes() bytes (64-byte aligned); RESOURCE_EXHAUSTED when
  // every block is in use.
  absl::StatusOr<float*> Allocate();
  void Release(float* block);

  int64_t block_bytes() const { return block_bytes_; }
  int64_t total_blocks() const { return total_blocks_; }
  int64_t used_blocks() const;

 private:
  KvBlockPool(int64_t total_blocks, int64_t block_bytes)
      : total_blocks_(total_blocks), block_bytes_(block_bytes) {}

  const int64_t total_blocks_;
  const int64_t block_bytes_;
  mutable std::mutex mu_;
  int64_t used_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<float*> free_ ABSL_GUARDED_BY(mu_);  // released blocks, kept for reuse
};

// The paged cache of one stream: `batch` rows of equal length. Not
// thread-safe; returns its blocks to the pool when destroyed.
class PagedKvCache {
 public:
  // INVALID_ARGUMENT if one token of one row and head does not fit a block.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvLayout& layout,
                                                              int64_t batch, KvBlockPool* pool);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // Makes room for `tokens` more tokens per row. RESOURCE_EXHAUSTED (naming
  // the budget) leaves the cache as it was.
  absl::Status Reserve(int64_t tokens);
  // Declares `tokens` more tokens written (after Reserve).
  void Advance(int64_t tokens) { length_ += tokens; }

  const KvLayout& layout() const { return layout_; }
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }
  int64_t tokens_per_block() const { return tokens_per_block_; }
  int64_t blocks_held() const;

  // Row of token t (any t < reserved capacity) for batch row b, head h.
  float* K(int64_t b, int64_t h, int64_t t) const {
    return Block(b, h, t / tokens_per_block_) + t % tokens_per_block_ * layout_.k_width;
  }
  float* V(int64_t b, int64_t h, int64_t t) const {
    if (layout_.v_in_k) return K(b, h, t);
    return Block(b, h, t / tokens_per_block_) + tokens_per_block_ * layout_.k_width +
           t % tokens_per_block_ * layout_.v_width;
  }
  // Leading dimension of K / V rows inside a block.
  int64_t v_stride() const { return layout_.v_in_k ? layout_.k_width : layout_.v_width; }

 private:
  PagedKvCache(const KvLayout& layout, int64_t batch, int64_t tokens_per_block, KvBlockPool* pool)
      : layout_(layout), batch_(batch), tokens_per_block_(tokens_per_block), pool_(pool),
        blocks_(batch * layout.heads) {}
  float* Block(int64_t b, int64_t h, int64_t i) const { return blocks_[b * layout_.heads + h][i]; }

  KvLayout layout_;
  int64_t batch_;
  int64_t tokens_per_block_;
  KvBlockPool* pool_;
  std::vector<std::vector<float*>> blocks_;  // per (batch row, head)
  int64_t length_ = 0;
};

// Causal attention of the cache's last T tokens (the chunk just appended)
// over everything cached (bottom-right aligned, so the outputs equal one
// causal pass over the whole sequence).
//   query  [B, Hq, T, Dk]   Dk = layout.k_width, Hq % layout.heads == 0
//   output [B, Hq, T, Dv]   Dv = layout.v_width
absl::Status PagedSdpa(const View4& query, const PagedKvCache& cache, float scale,
                       const MutView4& output);

}  // namespace attention

#endif  // ATTENTION_CORE_KV_CACHE_H_
