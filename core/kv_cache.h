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
// a stream has B·Hkv lanes. A head row is one token of one lane (its K row,
// then its V row unless v_in_k). A block holds P = ⌊block_bytes / head-row
// bytes⌋ head rows, K [P][k_width] then V [P][v_width], and a stream's head
// rows fill its blocks densely in this order:
//   tokens are cut into chunks of R tokens (R about kRunTokens, or P when a
//   block holds fewer head rows);
//   a sealed chunk (every chunk but the last) is lane-major: lane 0's R
//   tokens, then lane 1's ..., so each lane reads its keys in contiguous
//   runs of R rows (split where a run crosses a block), the runs the decode
//   kernel streams at memory speed;
//   the last chunk is token-major: token 0 of every lane, then token 1 ...,
//   so it grows a lane row at a time.
// When a chunk fills, it is transposed in place into the lane-major order;
// its blocks do not change. So n tokens of every row take exactly
// ⌈n·B·Hkv / P⌉ blocks: a stream is within one block of its bytes at any
// length, whatever its max_tokens (demo-mha, 1 token: one block), and long
// streams keep their long runs. Each head row is moved once, when its chunk
// seals.
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

// Tokens of a sealed chunk's run (the file comment) when a block holds at
// least that many head rows. Shorter runs cost PagedSdpa time: 16-token runs
// took 1.06-1.7x as long on the 4096-token decode shapes of attention_bench.
inline constexpr int64_t kRunTokens = 64;

// How a stream of `batch` rows fills its blocks (the file comment).
struct KvBlockPlan {
  int64_t lanes = 1;           // B·Hkv
  int64_t rows_per_block = 1;  // P >= 1 head rows
  int64_t chunk_tokens = 1;    // R >= 1

  // Blocks holding `tokens` (>= 0) tokens of every row: ⌈tokens·lanes / P⌉,
  // saturating at INT64_MAX.
  int64_t BlocksFor(int64_t tokens) const;
};

// The plan of a stream of `batch` rows in blocks of `block_bytes`.
// INVALID_ARGUMENT unless 1 <= batch <= kMaxConfigDim; RESOURCE_EXHAUSTED
// naming --kv_block_kb if one token of one head is larger than a block
// (servers can check a module at LoadModule with batch 1).
absl::StatusOr<KvBlockPlan> PlanKvBlocks(const KvLayout& layout, int64_t batch,
                                         int64_t block_bytes);

// Rows j .. j + count - 1 of one lane's K (or V) at data + (j - j0)·stride.
struct KvRun {
  float* data;
  int64_t stride;  // floats
  int64_t count;
};

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
  // A cache that reserves (without memory) the blocks of max(max_tokens, 1)
  // tokens of every row (max_tokens 0: no limit); growth draws on that
  // reservation before the shared budget. Bookkeeping is allocated only
  // after the reservation succeeded.
  //   INVALID_ARGUMENT    batch outside 1 .. kMaxConfigDim, or max_tokens < 0
  //   RESOURCE_EXHAUSTED  a head's token is larger than a block (naming
  //                       --kv_block_kb), or the reservation does not fit the
  //                       budget (naming --kv_cache_mb, with need and free)
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvLayout& layout, int64_t batch,
                                                              int64_t max_tokens,
                                                              KvBlockPool* pool);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // Makes room for `tokens` more tokens per row: memory for their blocks,
  // reserved from the budget past this cache's own reservation, and seals
  // the chunk the new tokens complete (so K() and V() of tokens to be
  // written are where they stay). RESOURCE_EXHAUSTED (naming the budget)
  // leaves the cache as it was.
  absl::Status Reserve(int64_t tokens);
  // Declares `tokens` more tokens written (after Reserve).
  void Advance(int64_t tokens) { length_ += tokens; }

  const KvLayout& layout() const { return layout_; }
  const KvBlockPlan& plan() const { return plan_; }
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }
  // Blocks with memory; blocks counted against the budget (>= blocks_held).
  int64_t blocks_held() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t blocks_reserved() const { return reserved_; }

  // Row of token t (any t < room made by Reserve) for batch row b, head h.
  float* K(int64_t b, int64_t h, int64_t t) const { return KAt(Slot(b * layout_.heads + h, t)); }
  float* V(int64_t b, int64_t h, int64_t t) const { return VAt(Slot(b * layout_.heads + h, t)); }
  // The run of rows of batch row b, head h from token t on (count >= 1; it
  // may reach past length()): contiguous in a sealed chunk, lanes rows apart
  // in the last one.
  KvRun KRun(int64_t b, int64_t h, int64_t t) const {
    return Run(b * layout_.heads + h, t, layout_.k_width, false);
  }
  KvRun VRun(int64_t b, int64_t h, int64_t t) const {
    return Run(b * layout_.heads + h, t, v_stride(), true);
  }
  // Leading dimension of K / V rows inside a block.
  int64_t v_stride() const { return layout_.v_in_k ? layout_.k_width : layout_.v_width; }
  // Tokens in lane-major chunks (a multiple of chunk_tokens).
  int64_t sealed_tokens() const { return sealed_; }

 private:
  PagedKvCache(const KvLayout& layout, int64_t batch, const KvBlockPlan& plan, int64_t reserved,
               KvBlockPool* pool)
      : layout_(layout), plan_(plan), batch_(batch), pool_(pool), reserved_(reserved) {}
  // Position of (lane, t) among the stream's head rows.
  int64_t Slot(int64_t lane, int64_t t) const {
    const int64_t r = plan_.chunk_tokens, chunk = t / r, base = chunk * plan_.lanes * r;
    return t < sealed_ ? base + lane * r + t % r : base + t % r * plan_.lanes + lane;
  }
  float* KAt(int64_t slot) const {
    return blocks_[slot / plan_.rows_per_block] + slot % plan_.rows_per_block * layout_.k_width;
  }
  float* VAt(int64_t slot) const {
    if (layout_.v_in_k) return KAt(slot);
    return blocks_[slot / plan_.rows_per_block] + plan_.rows_per_block * layout_.k_width +
           slot % plan_.rows_per_block * layout_.v_width;
  }
  KvRun Run(int64_t lane, int64_t t, int64_t width, bool values) const;
  // Transposes chunk `chunk` (all its blocks held) from token-major into
  // lane-major order.
  void SealChunk(int64_t chunk);

  KvLayout layout_;
  KvBlockPlan plan_;
  int64_t batch_;
  KvBlockPool* pool_;
  int64_t reserved_;            // blocks counted against the pool, >= blocks_.size()
  std::vector<float*> blocks_;  // the stream's head rows, P per block, in order
  int64_t length_ = 0;
  int64_t sealed_ = 0;
};

}  // namespace attention

#endif  // ATTENTION_CORE_KV_CACHE_H_
