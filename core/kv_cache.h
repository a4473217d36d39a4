// KV caches for streaming decode: a server-wide budget of fixed-size blocks
// and the paged cache of one stream, grown block by block without copying.
//
// Per token and batch row, a cache holds what the variant needs and no more
// (float32):
//   mha / gqa / mqa / self_attention   K and V of the Hkv heads
//   mla                                 the latent [RMSNorm(c_KV) | RoPE(k_rope)]
//                                       (kv_lora_rank + qk_rope_head_dim); values
//                                       are its first kv_lora_rank columns
//
// Block layout. A lane is one (batch row b, kv head h), numbered b·Hkv + h;
// a stream has B·Hkv lanes. A block holds tokens_per_block (tpb) consecutive
// tokens of lanes_per_block (λ) consecutive lanes, lane-major, so each lane
// still reads its keys (and values) in contiguous runs of tpb rows:
//   K [λ][tpb][k_width], then (unless v_in_k) V [λ][tpb][v_width].
// The lanes form groups = ⌈B·Hkv / λ⌉ groups, every group with the same
// number of blocks. λ is as large as a block allows while a run stays
// min(max_tokens, kRunTokens) tokens long (kRunTokens when max_tokens is 0,
// no limit). So a short stream (max_tokens <= kRunTokens) packs its lanes
// into as few blocks as its bytes need: with B·Hkv·max_tokens tokens of one
// head within a block, 1 token takes 1 block, not one per (row, head). A long
// or unbounded stream keeps the runs the kernel streams at memory speed. In
// general a stream holds at most `groups` blocks more than its bytes need
// (one partly filled block per group).
#ifndef ATTENTION_CORE_KV_CACHE_H_
#define ATTENTION_CORE_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
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

// Tokens of one lane a block keeps contiguous for long streams (the file
// comment). Shorter runs cost PagedSdpa time: 16-token runs took 1.06-1.7x as
// long on the 4096-token decode shapes of attention_bench.
inline constexpr int64_t kRunTokens = 64;

// How a stream of `batch` rows is cut into blocks (the file comment).
struct KvBlockPlan {
  int64_t lanes_per_block = 1;   // λ, 1 .. B·Hkv
  int64_t tokens_per_block = 1;  // tpb >= 1
  int64_t groups = 1;            // ⌈B·Hkv / λ⌉

  // Blocks holding `tokens` (>= 0) tokens of every row: groups · ⌈tokens /
  // tpb⌉, saturating at INT64_MAX.
  int64_t BlocksFor(int64_t tokens) const;
};

// The plan of a stream of `batch` rows and `max_tokens` (>= 0; 0: no limit)
// in blocks of `block_bytes`. INVALID_ARGUMENT unless 1 <= batch <=
// kMaxConfigDim; RESOURCE_EXHAUSTED naming --kv_block_kb if one token of one
// head is larger than a block (servers can check a module at LoadModule with
// batch 1, max_tokens 0).
absl::StatusOr<KvBlockPlan> PlanKvBlocks(const KvLayout& layout, int64_t batch,
                                         int64_t max_tokens, int64_t block_bytes);

// A fixed budget of equal blocks shared by all streams. A block is counted
// against the budget when reserved, and gets memory only when a stream is
// about to write it (AllocateReserved), so a reservation costs no memory
// until it is used. Thread-safe.
class KvBlockPool {
 public:
  // INVALID_ARGUMENT unless 1 KiB <= block_bytes and block_bytes % 64 == 0;
  // the pool holds budget_bytes / block_bytes blocks (possibly 0).
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(int64_t budget_bytes,
                                                             int64_t block_bytes);
  ~KvBlockPool();

  // Counts `blocks` (>= 0) more blocks against the budget. Otherwise
  // RESOURCE_EXHAUSTED naming --kv_cache_mb, `what` needs them ("2 rows x 8
  // tokens"), the need and what is free; nothing is reserved then.
  absl::Status Reserve(int64_t blocks, absl::string_view what);
  // Gives back `blocks` reserved blocks that hold no memory.
  void Unreserve(int64_t blocks);
  // Memory for one block already reserved (block_bytes(), 64-byte aligned,
  // contents undefined). RESOURCE_EXHAUSTED if the process is out of memory.
  absl::StatusOr<float*> AllocateReserved();
  // Takes back the memory of a block; the block stays reserved.
  void FreeReserved(float* block);

  int64_t block_bytes() const { return block_bytes_; }
  int64_t total_blocks() const { return total_blocks_; }
  // Blocks counted against the budget (reserved, with or without memory).
  int64_t used_blocks() const;

 private:
  KvBlockPool(int64_t total_blocks, int64_t block_bytes)
      : total_blocks_(total_blocks), block_bytes_(block_bytes) {}

  const int64_t total_blocks_;
  const int64_t block_bytes_;
  mutable std::mutex mu_;
  int64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<float*> free_ ABSL_GUARDED_BY(mu_);  // memory given back, kept for reuse
};

// The paged cache of one stream: `batch` rows of equal length. Not
// thread-safe; gives its blocks and its reservation back to the pool when
// destroyed.
class PagedKvCache {
 public:
  // A cache planned for `max_tokens` (0: no limit) that reserves (without
  // memory) the blocks of max(max_tokens, 1) tokens of every row; growth
  // draws on that reservation before the shared budget. Bookkeeping is
  // O(groups), allocated after the reservation succeeded.
  //   INVALID_ARGUMENT    batch outside 1 .. kMaxConfigDim, or max_tokens < 0
  //   RESOURCE_EXHAUSTED  a head's token is larger than a block (naming
  //                       --kv_block_kb), or the reservation does not fit the
  //                       budget (naming --kv_cache_mb, with need and free)
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvLayout& layout,
                                                              int64_t batch,
                                                              int64_t max_tokens,
                                                              KvBlockPool* pool);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // Makes room for `tokens` more tokens per row: memory for their blocks,
  // reserved from the budget past this cache's own reservation.
  // RESOURCE_EXHAUSTED (naming the budget) leaves the cache as it was.
  absl::Status Reserve(int64_t tokens);
  // Declares `tokens` more tokens written (after Reserve).
  void Advance(int64_t tokens) { length_ += tokens; }

  const KvLayout& layout() const { return layout_; }
  const KvBlockPlan& plan() const { return plan_; }
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }
  int64_t tokens_per_block() const { return plan_.tokens_per_block; }
  // Blocks with memory; blocks counted against the budget (>= blocks_held).
  int64_t blocks_held() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t blocks_reserved() const { return reserved_; }

  // Row of token t (any t < room made by Reserve) for batch row b, head h.
  float* K(int64_t b, int64_t h, int64_t t) const {
    const int64_t lane = b * layout_.heads + h, tpb = plan_.tokens_per_block;
    return Block(lane, t) + (lane % plan_.lanes_per_block * tpb + t % tpb) * layout_.k_width;
  }
  float* V(int64_t b, int64_t h, int64_t t) const {
    if (layout_.v_in_k) return K(b, h, t);
    const int64_t lane = b * layout_.heads + h, tpb = plan_.tokens_per_block;
    return Block(lane, t) + plan_.lanes_per_block * tpb * layout_.k_width +
           (lane % plan_.lanes_per_block * tpb + t % tpb) * layout_.v_width;
  }
  // Leading dimension of K / V rows inside a block.
  int64_t v_stride() const { return layout_.v_in_k ? layout_.k_width : layout_.v_width; }

 private:
  PagedKvCache(const KvLayout& layout, int64_t batch, const KvBlockPlan& plan, int64_t reserved,
               KvBlockPool* pool)
      : layout_(layout), plan_(plan), batch_(batch), pool_(pool), reserved_(reserved) {}
  float* Block(int64_t lane, int64_t t) const {
    return blocks_[t / plan_.tokens_per_block * plan_.groups + lane / plan_.lanes_per_block];
  }

  KvLayout layout_;
  KvBlockPlan plan_;
  int64_t batch_;
  KvBlockPool* pool_;
  int64_t reserved_;            // blocks counted against the pool, >= blocks_.size()
  std::vector<float*> blocks_;  // block i of group g at [i · groups + g]
  int64_t length_ = 0;
};

}  // namespace attention

#endif  // ATTENTION_CORE_KV_CACHE_H_
