#include "core/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace attention {

KvLayout CacheLayout(const ModuleConfig& c, DType kv_dtype) {
  KvLayout l;
  l.dtype = kv_dtype;
  switch (c.variant) {
    case Variant::kSelfAttention:
      l.heads = 1;
      l.k_width = c.d_k;
      l.v_width = c.d_v;
      break;
    case Variant::kMla:
      l.heads = 1;
      l.k_width = c.kv_lora_rank + c.qk_rope_head_dim;
      l.v_width = c.kv_lora_rank;
      l.v_in_k = true;
      break;
    default:
      l.heads = NumKvHeads(c);
      l.k_width = l.v_width = HeadDimK(c);
      break;
  }
  return l;
}

KvLayout CacheLayout(const ModuleConfig& c) { return CacheLayout(c, c.kv_cache_dtype); }

void RowToFloat(DType dtype, const void* row, float scale, int64_t n, float* out) {
  DecodeToFloat(dtype, row, n, out);
  if (dtype == DType::kInt8) {
    for (int64_t i = 0; i < n; ++i) out[i] *= scale;
  }
}

int64_t KvBlockPlan::BlocksFor(int64_t tokens) const {
  if (tokens > INT64_MAX / lanes) return INT64_MAX;
  const int64_t rows = tokens * lanes;
  return rows / rows_per_block + (rows % rows_per_block != 0 ? 1 : 0);
}

int64_t KvBlockPlan::WindowBlocks(int64_t window, int64_t tokens) const {
  if (tokens > INT64_MAX - chunk_tokens) return INT64_MAX;
  const int64_t extra = tokens + chunk_tokens - 2;  // >= -1
  if (extra > 0 && window > INT64_MAX - extra) return INT64_MAX;
  const int64_t blocks = BlocksFor(window + extra);
  return blocks == INT64_MAX ? INT64_MAX : blocks + 1;
}

absl::StatusOr<KvBlockPlan> PlanKvBlocks(const KvLayout& layout, int64_t batch,
                                         int64_t block_bytes) {
  if (batch < 1 || batch > kMaxConfigDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch: expected 1..", kMaxConfigDim, ", got ", batch));
  }
  const int64_t head_bytes = layout.HeadRowBytes();
  if (head_bytes > block_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache: one token of one kv head needs ",
                                                     head_bytes, " bytes, more than a block of ",
                                                     block_bytes, " (raise --kv_block_kb)"));
  }
  KvBlockPlan plan;
  plan.lanes = batch * layout.heads;  // both <= kMaxConfigDim (2^20): no overflow
  // As many rows as fit with the scales 4-byte aligned after the rows.
  const int64_t es = DTypeSize(layout.dtype);
  const int64_t kv_row = (layout.k_width + (layout.v_in_k ? 0 : layout.v_width)) * es;
  int64_t p = block_bytes / head_bytes;
  auto scale_offset = [&](int64_t rows) { return (rows * kv_row + 3) / 4 * 4; };
  if (layout.ScalesPerHeadRow() > 0 &&
      scale_offset(p) + 4 * layout.ScalesPerHeadRow() * p > block_bytes) {
    --p;
  }
  if (p < 1) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache: one token of one kv head needs ",
                                                     head_bytes, " bytes, more than a block of ",
                                                     block_bytes, " (raise --kv_block_kb)"));
  }
  plan.rows_per_block = p;
  plan.v_offset = p * layout.k_width * es;
  plan.scale_offset = scale_offset(p);
  // Runs of about kRunTokens that tile a block (runs cross blocks only when
  // they cannot), or one block's rows when that is fewer.
  const int64_t runs_per_block = std::max<int64_t>(1, plan.rows_per_block / kRunTokens);
  plan.chunk_tokens = plan.rows_per_block / runs_per_block;
  return plan;
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(int64_t budget_bytes,
                                                                 int64_t block_bytes) {
  if (block_bytes < 1024 || block_bytes % 64 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv block size: expected a multiple of 64 bytes >= 1024, got ", block_bytes));
  }
  if (budget_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache budget: expected >= 0 bytes, got ", budget_bytes));
  }
  return std::unique_ptr<KvBlockPool>(new KvBlockPool(budget_bytes / block_bytes, block_bytes));
}

KvBlockPool::~KvBlockPool() {
  for (uint8_t* b : free_) std::free(b);
}

absl::Status KvBlockPool::Reserve(int64_t blocks, absl::string_view what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (blocks > total_blocks_ - reserved_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv cache: ", what, " need ", blocks, " blocks of ", block_bytes_, " bytes; ",
                     total_blocks_ - reserved_, " of the server's ", total_blocks_,
                     " blocks are free (--kv_cache_mb)"));
  }
  reserved_ += blocks;
  return absl::OkStatus();
}

void KvBlockPool::Unreserve(int64_t blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  reserved_ -= blocks;
}

absl::StatusOr<uint8_t*> KvBlockPool::AllocateReserved() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      uint8_t* block = free_.back();
      free_.pop_back();
      return block;
    }
  }
  auto* block = static_cast<uint8_t*>(std::aligned_alloc(64, static_cast<size_t>(block_bytes_)));
  if (block == nullptr) return absl::ResourceExhaustedError("kv cache: out of memory");
  return block;
}

void KvBlockPool::FreeReserved(uint8_t* block) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(block);
}

int64_t KvBlockPool::used_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reserved_;
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvLayout& layout,
                                                                   int64_t batch,
                                                                   int64_t max_tokens,
                                                                   KvBlockPool* pool,
                                                                   int64_t window) {
  if (max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: expected >= 0 (0: no limit), got ", max_tokens));
  }
  if (window < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window: expected >= 0 (0: none), got ", window));
  }
  ATTN_ASSIGN_OR_RETURN(const KvBlockPlan plan, PlanKvBlocks(layout, batch, pool->block_bytes()));
  // Counted before any bookkeeping exists: an absurd batch costs nothing.
  const int64_t tokens = std::max<int64_t>(max_tokens, 1);
  int64_t blocks = plan.BlocksFor(tokens);
  const bool capped = window > 0 && plan.WindowBlocks(window, plan.chunk_tokens) < blocks;
  if (capped) blocks = plan.WindowBlocks(window, plan.chunk_tokens);
  ATTN_RETURN_IF_ERROR(pool->Reserve(
      blocks, absl::StrCat(batch, " rows x ", tokens, " tokens",
                           capped ? absl::StrCat(" in a sliding window of ", window) : "")));
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(layout, batch, plan, blocks, pool));
}

PagedKvCache::~PagedKvCache() {
  for (uint8_t* b : blocks_) pool_->FreeReserved(b);
  pool_->Unreserve(reserved_);
}

absl::Status PagedKvCache::Reserve(int64_t tokens) {
  // Blocks to hold: those up to the new length, less the ones given back.
  const int64_t need = plan_.BlocksFor(length_ + tokens) - first_block_;
  const int64_t have = blocks_held(), reserved = reserved_;
  if (need > reserved_) {
    ATTN_RETURN_IF_ERROR(
        pool_->Reserve(need - reserved_, absl::StrCat(batch_, " rows x ", tokens, " more tokens")));
    reserved_ = need;
  }
  while (blocks_held() < need) {
    absl::StatusOr<uint8_t*> block = pool_->AllocateReserved();
    if (!block.ok()) {  // undo
      while (blocks_held() > have) {
        pool_->FreeReserved(blocks_.back());
        blocks_.pop_back();
      }
      pool_->Unreserve(reserved_ - reserved);
      reserved_ = reserved;
      return block.status();
    }
    blocks_.push_back(*block);
  }
  // Every chunk the new tokens complete is sealed. Only the one at sealed_
  // can hold rows (token-major); later ones are empty, so their order is
  // just declared.
  const int64_t r = plan_.chunk_tokens, sealed = (length_ + tokens) / r * r;
  if (sealed > sealed_) {
    if (length_ > sealed_) SealChunk(sealed_ / r);
    sealed_ = sealed;
  }
  return absl::OkStatus();
}

void PagedKvCache::DropBefore(int64_t token) {
  token = std::min(token, length_);
  if (token <= first_kept_) return;
  first_kept_ = token;
  // Chunks [0, token / R) are dropped: slots [0, dropped) (every chunk
  // interleaves all lanes, so a partly dropped chunk keeps all its slots).
  // Complete chunks: all their blocks exist.
  const int64_t r = plan_.chunk_tokens;
  const int64_t dropped = token / r * r * plan_.lanes;
  const int64_t first_block = dropped / plan_.rows_per_block;
  if (first_block > first_block_) {
    const auto end = blocks_.begin() + (first_block - first_block_);
    for (auto it = blocks_.begin(); it != end; ++it) pool_->FreeReserved(*it);
    blocks_.erase(blocks_.begin(), end);  // the held pointers move: a window's worth
    first_block_ = first_block;
  }
  // The reservation past what is held goes back, down to the own one.
  const int64_t keep = std::max(blocks_held(), own_reserved_);
  if (reserved_ > keep) {
    pool_->Unreserve(reserved_ - keep);
    reserved_ = keep;
  }
}

void PagedKvCache::Store(uint8_t* row, float* scale, const float* values, int64_t n) {
  if (layout_.dtype != DType::kInt8) {
    EncodeFromFloat(layout_.dtype, values, n, row);
    return;
  }
  float absmax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite = finite && std::isfinite(values[i]);
    absmax = std::max(absmax, std::fabs(values[i]));
  }
  if (!finite) {  // reads back as NaN, as a float row with NaN or inf attends
    *scale = std::numeric_limits<float>::quiet_NaN();
    std::memset(row, 0, static_cast<size_t>(n));
    return;
  }
  *scale = absmax / 127.0f;
  const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
  auto* q = reinterpret_cast<int8_t*>(row);
  for (int64_t i = 0; i < n; ++i) {
    q[i] = static_cast<int8_t>(std::lrint(std::clamp(values[i] * inv, -127.0f, 127.0f)));
  }
}

void PagedKvCache::StoreK(int64_t b, int64_t h, int64_t t, const float* row) {
  const int64_t slot = Slot(b * layout_.heads + h, t);
  Store(KAt(slot), layout_.dtype == DType::kInt8 ? KScaleAt(slot) : nullptr, row, layout_.k_width);
}

void PagedKvCache::StoreV(int64_t b, int64_t h, int64_t t, const float* row) {
  const int64_t slot = Slot(b * layout_.heads + h, t);
  Store(VAt(slot), layout_.dtype == DType::kInt8 ? VScaleAt(slot) : nullptr, row, layout_.v_width);
}

void PagedKvCache::LoadK(int64_t b, int64_t h, int64_t t, float* row) const {
  const int64_t slot = Slot(b * layout_.heads + h, t);
  RowToFloat(layout_.dtype, KAt(slot), layout_.dtype == DType::kInt8 ? *KScaleAt(slot) : 1.0f,
             layout_.k_width, row);
}

void PagedKvCache::LoadV(int64_t b, int64_t h, int64_t t, float* row) const {
  const int64_t slot = Slot(b * layout_.heads + h, t);
  RowToFloat(layout_.dtype, VAt(slot), layout_.dtype == DType::kInt8 ? *VScaleAt(slot) : 1.0f,
             layout_.v_width, row);
}

KvRun PagedKvCache::KRun(int64_t b, int64_t h, int64_t t) const {
  return Run(b * layout_.heads + h, t, false);
}

KvRun PagedKvCache::VRun(int64_t b, int64_t h, int64_t t) const {
  return Run(b * layout_.heads + h, t, true);
}

KvRun PagedKvCache::Run(int64_t lane, int64_t t, bool values) const {
  const int64_t slot = Slot(lane, t), p = plan_.rows_per_block, r = plan_.chunk_tokens;
  const int64_t width = values && !layout_.v_in_k ? layout_.v_width : layout_.k_width;
  const bool int8 = layout_.dtype == DType::kInt8;
  KvRun run{values ? VAt(slot) : KAt(slot), width, 0,
            int8 ? (values ? VScaleAt(slot) : KScaleAt(slot)) : nullptr, 1};
  const int64_t left_in_chunk = r - t % r, left_in_block = p - slot % p;
  if (t < sealed_) {
    run.count = std::min(left_in_chunk, left_in_block);
  } else {  // token-major: the lane's next rows are `lanes` rows apart
    run.stride *= plan_.lanes;
    run.scale_stride = plan_.lanes;
    run.count = std::min(left_in_chunk, (left_in_block - 1) / plan_.lanes + 1);
  }
  return run;
}

void PagedKvCache::SealChunk(int64_t chunk) {
  // In-place transpose of the chunk's R × lanes head rows (token-major
  // position i = t·lanes + lane) into lanes × R (lane·R + t), by following
  // the permutation's cycles; each row moves once.
  const int64_t lanes = plan_.lanes, r = plan_.chunk_tokens, n = lanes * r;
  const int64_t base = chunk * n;
  auto dest = [&](int64_t i) { return i % lanes * r + i / lanes; };
  std::vector<uint64_t> moved(static_cast<size_t>((n + 63) / 64), 0);
  auto seen = [&](int64_t i) { return (moved[i / 64] >> (i % 64) & 1) != 0; };
  auto mark = [&](int64_t i) { moved[i / 64] |= uint64_t{1} << (i % 64); };
  const int64_t es = DTypeSize(layout_.dtype);
  const int64_t kb = layout_.k_width * es, vb = layout_.v_in_k ? 0 : layout_.v_width * es;
  const bool scales = layout_.dtype == DType::kInt8, v_scale = scales && !layout_.v_in_k;
  std::vector<uint8_t> carry_k(kb), carry_v(vb);
  float carry_ks = 0.0f, carry_vs = 0.0f;
  auto swap_with = [&](int64_t slot) {
    std::swap_ranges(carry_k.begin(), carry_k.end(), KAt(slot));
    if (vb > 0) std::swap_ranges(carry_v.begin(), carry_v.end(), VAt(slot));
    if (scales) std::swap(carry_ks, *KScaleAt(slot));
    if (v_scale) std::swap(carry_vs, *VScaleAt(slot));
  };
  for (int64_t start = 0; start < n; ++start) {
    if (seen(start)) continue;
    mark(start);
    if (dest(start) == start) continue;
    swap_with(base + start);  // carries the start's row (its slot holds junk until the end)
    for (int64_t i = dest(start);; i = dest(i)) {
      swap_with(base + i);
      if (i == start) break;
      mark(i);
    }
  }
}

}  // namespace attention
