// KV caches for streaming decode: a server-wide budget of fixed-size blocks
// and the paged cache of one stream, grown block by block without copying.
//
// Per token and batch row, a cache holds what the variant needs and no more:
//   mha / gqa / mqa / self_attention   K and V of the Hkv heads
//   mla                                 the latent [RMSNorm(c_KV) | RoPE(k_rope)]
//                                       (kv_lora_rank + qk_rope_head_dim); values
//                                       are its first kv_lora_rank columns
// in one of the storage types (KvLayout::dtype): float32, bfloat16 or
// float16 (rounded to nearest, ties to even), or int8 with one float32
// scale per row (symmetric: scale = absmax / 127, value = int8 · scale; a
// row with a NaN or an infinity reads back as NaN). Readers convert rows
// in registers (RowToFloat, the decode kernels); nothing is dequantised
// into a second copy.
//
// Block layout. A lane is one (batch row b, kv head h), numbered b·Hkv + h;
// a stream has B·Hkv lanes. A head row is one token of one lane (its K row,
// then its V row unless v_in_k, then for int8 their scales). A block holds
// P head rows (as many as fit), K [P][k_width], then V [P][v_width], then
// for int8 the K scales [P] and V scales [P] (float32, 4-byte aligned), and
// a stream's head rows fill its blocks densely in this order:
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
//
// Sliding windows. A layer whose tokens see only the last W keys
// (ModuleConfig::sliding_window) declares the older tokens dropped after
// each chunk (PagedKvCache::DropBefore(length() - W + 1)). Every chunk
// interleaves all lanes, so tokens go by whole chunks, and memory by whole
// blocks: a block is given back (its memory to the pool, its reservation
// to the budget) once every slot in it belongs to a dropped chunk. Token
// indices stay absolute. A stream that drops so holds at most
// KvBlockPlan::WindowBlocks(W, T) blocks while a chunk of T tokens is added,
// and WindowBlocks(W, 0) between chunks, however long it runs.
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
#include "core/dtype.h"
#include "core/tensor.h"

namespace attention {

struct KvLayout {
  int64_t heads = 1;              // Hkv (1 for mla)
  int64_t k_width = 0;            // per head: Dk (mla: kv_lora_rank + qk_rope_head_dim)
  int64_t v_width = 0;            // per head: Dv (mla: kv_lora_rank)
  bool v_in_k = false;            // mla: values are the first v_width columns of the key rows
  DType dtype = DType::kFloat32;  // kFloat32, kBfloat16, kFloat16 or kInt8

  // Float32 scales per head row: int8 K and V (K alone when v_in_k).
  int64_t ScalesPerHeadRow() const { return dtype == DType::kInt8 ? (v_in_k ? 1 : 2) : 0; }
  // Bytes of one head row, scales included.
  int64_t HeadRowBytes() const {
    return (k_width + (v_in_k ? 0 : v_width)) * DTypeSize(dtype) + 4 * ScalesPerHeadRow();
  }
  int64_t BytesPerToken() const { return heads * HeadRowBytes(); }
};

// The cache layout of a valid config in `kv_dtype` (a KV-cache dtype:
// CheckKvCacheDType); BytesPerToken() equals KvCacheBytesPerToken(config,
// kv_dtype).
KvLayout CacheLayout(const ModuleConfig& config, DType kv_dtype);
// In config.kv_cache_dtype.
KvLayout CacheLayout(const ModuleConfig& config);

// Rows j .. j + count - 1 of one lane's K (or V): row j at data + (j - j0)·
// stride elements of the layout's dtype; for int8 its scale at scales +
// (j - j0)·scale_stride (scales is null for the other types).
struct KvRun {
  const void* data;
  int64_t stride;  // elements
  int64_t count;
  const float* scales;
  int64_t scale_stride;
};

// `n` elements of a stored row (`scale`: its int8 scale, else unused) as
// float32.
void RowToFloat(DType dtype, const void* row, float scale, int64_t n, float* out);

// Tokens of a sealed chunk's run (the file comment) when a block holds at
// least that many head rows. Shorter runs cost PagedSdpa time: 16-token runs
// took 1.06-1.7x as long on the 4096-token decode shapes of attention_bench.
inline constexpr int64_t kRunTokens = 64;

// How a stream of `batch` rows fills its blocks (the file comment).
struct KvBlockPlan {
  int64_t lanes = 1;           // B·Hkv
  int64_t rows_per_block = 1;  // P >= 1 head rows
  int64_t chunk_tokens = 1;    // R >= 1
  // Offsets in a block: V rows (bytes; = the K rows' end when v_in_k) and
  // the int8 scales (bytes, K scales then P V scales).
  int64_t v_offset = 0;
  int64_t scale_offset = 0;

  // Blocks holding `tokens` (>= 0) tokens of every row: ⌈tokens·lanes / P⌉,
  // saturating at INT64_MAX.
  int64_t BlocksFor(int64_t tokens) const;
  // The most blocks a stream of sliding window `window` (W >= 1) holds
  // while a chunk of `tokens` (T >= 0) is added, when every chunk before it
  // ended with DropBefore(length() - W + 1): BlocksFor(W + R - 2 + T) + 1,
  // saturating at INT64_MAX. (The first kept chunk starts at most R - 1
  // tokens before the W - 1 the next token sees besides itself, and a block
  // shared by a dropped and a kept chunk stays: the + 1.) T = 0: between
  // chunks.
  int64_t WindowBlocks(int64_t window, int64_t tokens) const;
};

// The plan of a stream of `batch` rows in blocks of `block_bytes`.
// INVALID_ARGUMENT unless 1 <= batch <= kMaxConfigDim; RESOURCE_EXHAUSTED
// naming --kv_block_kb if one token of one head is larger than a block
// (servers can check a module at LoadModule with batch 1).
absl::StatusOr<KvBlockPlan> PlanKvBlocks(const KvLayout& layout, int64_t batch,
                                         int64_t block_bytes);

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
  absl::StatusOr<uint8_t*> AllocateReserved();
  // Takes back the memory of a block; the block stays reserved.
  void FreeReserved(uint8_t* block);

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
  std::vector<uint8_t*> free_ ABSL_GUARDED_BY(mu_);  // memory given back, kept for reuse
};

// The paged cache of one stream: `batch` rows of equal length. Not
// thread-safe; gives its blocks and its reservation back to the pool when
// destroyed.
class PagedKvCache {
 public:
  // A cache that reserves (without memory) the blocks of max(max_tokens, 1)
  // tokens of every row (max_tokens 0: no limit): the stream's own
  // reservation. Growth draws on it before the shared budget. A sliding
  // window W > 0 (the caller drops what falls out of it: DropBefore) caps
  // the own reservation at WindowBlocks(W, R), R = plan().chunk_tokens:
  // enough for any number of chunks of up to R tokens each, so such a
  // stream is refused for KV memory before max_tokens only in a chunk of
  // more than R tokens. Bookkeeping is allocated only after the
  // reservation succeeded.
  //   INVALID_ARGUMENT    batch outside 1 .. kMaxConfigDim, max_tokens < 0 or
  //                       window < 0
  //   RESOURCE_EXHAUSTED  a head's token is larger than a block (naming
  //                       --kv_block_kb), or the reservation does not fit the
  //                       budget (naming --kv_cache_mb, with need and free)
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvLayout& layout, int64_t batch,
                                                              int64_t max_tokens,
                                                              KvBlockPool* pool,
                                                              int64_t window = 0);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // Makes room for `tokens` more tokens per row: memory for their blocks,
  // reserved from the budget past this cache's own reservation, and seals
  // the chunk the new tokens complete (so rows stored next are where they
  // stay). RESOURCE_EXHAUSTED (naming the budget) leaves the cache as it
  // was.
  absl::Status Reserve(int64_t tokens);
  // Declares `tokens` more tokens written (after Reserve).
  void Advance(int64_t tokens) { length_ += tokens; }
  // Declares the tokens before `token` (clamped to length(); an earlier
  // point than before changes nothing) no longer read: from now on only
  // tokens >= first_kept() may be stored, loaded or run over. Gives back
  // every block whose slots all belong to chunks that end at or before
  // `token`: its memory to the pool and its reservation to the budget,
  // except what keeps the stream's reservation at its own (Create's), which
  // later growth draws on first. Later blocks, and every row of a kept
  // token, stay where they are (their runs too). PagedSdpa with window W
  // reads a chunk's tokens from length() - T - W + 1 on: after
  // DropBefore(length() - W + 1), every later chunk reads only kept tokens.
  void DropBefore(int64_t token);

  const KvLayout& layout() const { return layout_; }
  const KvBlockPlan& plan() const { return plan_; }
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }
  // Blocks with memory; blocks counted against the budget (>= blocks_held).
  int64_t blocks_held() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t blocks_reserved() const { return reserved_; }
  // The first token that may be read (DropBefore; 0 if nothing was dropped).
  int64_t first_kept() const { return first_kept_; }
  // Head rows in the blocks held, up to length(): length()·lanes less the
  // P rows of each block given back (dropped tokens' rows still in a held
  // block count). Without drops, length()·lanes.
  int64_t head_rows_held() const {
    return length_ * plan_.lanes - first_block_ * plan_.rows_per_block;
  }

  // Stores the K (k_width floats) or V (v_width floats; not when v_in_k)
  // row of token t (any t < room made by Reserve) of batch row b, head h,
  // converted to the layout's dtype.
  void StoreK(int64_t b, int64_t h, int64_t t, const float* row);
  void StoreV(int64_t b, int64_t h, int64_t t, const float* row);
  // Reads them back as float32 (V: the first v_width of K when v_in_k).
  void LoadK(int64_t b, int64_t h, int64_t t, float* row) const;
  void LoadV(int64_t b, int64_t h, int64_t t, float* row) const;
  // The run of rows of batch row b, head h from token t on (count >= 1; it
  // may reach past length()): contiguous in a sealed chunk, lanes rows apart
  // in the last one.
  KvRun KRun(int64_t b, int64_t h, int64_t t) const;
  KvRun VRun(int64_t b, int64_t h, int64_t t) const;
  // Tokens in lane-major chunks (a multiple of chunk_tokens).
  int64_t sealed_tokens() const { return sealed_; }

 private:
  PagedKvCache(const KvLayout& layout, int64_t batch, const KvBlockPlan& plan, int64_t reserved,
               KvBlockPool* pool)
      : layout_(layout),
        plan_(plan),
        batch_(batch),
        pool_(pool),
        own_reserved_(reserved),
        reserved_(reserved) {}
  // Position of (lane, t) among the stream's head rows, counted from its
  // first token (dropped ones included).
  int64_t Slot(int64_t lane, int64_t t) const {
    const int64_t r = plan_.chunk_tokens, chunk = t / r, base = chunk * plan_.lanes * r;
    return t < sealed_ ? base + lane * r + t % r : base + t % r * plan_.lanes + lane;
  }
  // The held block of a slot (of a kept token).
  uint8_t* BlockOf(int64_t slot) const {
    return blocks_[slot / plan_.rows_per_block - first_block_];
  }
  // Where a slot's K row, V row and (int8) scales are.
  uint8_t* KAt(int64_t slot) const {
    return BlockOf(slot) + slot % plan_.rows_per_block * layout_.k_width * DTypeSize(layout_.dtype);
  }
  uint8_t* VAt(int64_t slot) const {
    if (layout_.v_in_k) return KAt(slot);
    return BlockOf(slot) + plan_.v_offset +
           slot % plan_.rows_per_block * layout_.v_width * DTypeSize(layout_.dtype);
  }
  float* KScaleAt(int64_t slot) const {
    return reinterpret_cast<float*>(BlockOf(slot) + plan_.scale_offset) +
           slot % plan_.rows_per_block;
  }
  float* VScaleAt(int64_t slot) const {
    return layout_.v_in_k ? KScaleAt(slot) : KScaleAt(slot) + plan_.rows_per_block;
  }
  KvRun Run(int64_t lane, int64_t t, bool values) const;
  void Store(uint8_t* row, float* scale, const float* values, int64_t n);
  // Transposes chunk `chunk` (all its blocks held) from token-major into
  // lane-major order.
  void SealChunk(int64_t chunk);

  KvLayout layout_;
  KvBlockPlan plan_;
  int64_t batch_;
  KvBlockPool* pool_;
  int64_t own_reserved_;  // Create's reservation: reserved_ never falls below it
  int64_t reserved_;      // blocks counted against the pool, >= blocks_.size()
  // The stream's blocks from block first_block_ on (the earlier ones were
  // given back by DropBefore), P head rows each, in order. (The decode
  // kernels look a block up per run of rows; DropBefore moves the held
  // pointers when it gives blocks back, at most once a chunk.)
  std::vector<uint8_t*> blocks_;
  int64_t first_block_ = 0;
  int64_t first_kept_ = 0;
  int64_t length_ = 0;
  int64_t sealed_ = 0;
};

}  // namespace attention

#endif  // ATTENTION_CORE_KV_CACHE_H_
