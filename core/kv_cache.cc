#include "core/kv_cache.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace attention {

KvLayout CacheLayout(const ModuleConfig& c) {
  KvLayout l;
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
      l.k_width = l.v_width = c.d_model / NumQueryHeads(c);
      break;
  }
  return l;
}

int64_t KvBlockPlan::BlocksFor(int64_t tokens) const {
  const int64_t per_group = tokens / tokens_per_block + (tokens % tokens_per_block != 0 ? 1 : 0);
  return per_group > INT64_MAX / groups ? INT64_MAX : per_group * groups;
}

absl::StatusOr<KvBlockPlan> PlanKvBlocks(const KvLayout& layout, int64_t batch,
                                         int64_t max_tokens, int64_t block_bytes) {
  if (batch < 1 || batch > kMaxConfigDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch: expected 1..", kMaxConfigDim, ", got ", batch));
  }
  const int64_t head_bytes = layout.FloatsPerHeadToken() * 4;
  if (head_bytes > block_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv cache: one token of one kv head needs ", head_bytes, " bytes, more than a block of ",
        block_bytes, " (raise --kv_block_kb)"));
  }
  // batch and heads <= kMaxConfigDim (2^20): no overflow.
  const int64_t lanes = batch * layout.heads;
  KvBlockPlan plan;
  const int64_t run = max_tokens > 0 ? std::min(max_tokens, kRunTokens) : kRunTokens;
  plan.lanes_per_block = std::clamp<int64_t>(block_bytes / (run * head_bytes), 1, lanes);
  plan.tokens_per_block = block_bytes / (plan.lanes_per_block * head_bytes);
  plan.groups = (lanes + plan.lanes_per_block - 1) / plan.lanes_per_block;
  return plan;
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(int64_t budget_bytes,
                                                                 int64_t block_bytes) {
  if (block_bytes < 1024 || block_bytes % 64 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv block size: expected a multiple of 64 bytes >= 1024, got ", block_bytes));
  }
  if (budget_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache budget: expected >= 0 bytes, got ", budget_bytes));
  }
  return std::unique_ptr<KvBlockPool>(new KvBlockPool(budget_bytes / block_bytes, block_bytes));
}

KvBlockPool::~KvBlockPool() {
  for (float* b : free_) std::free(b);
}

absl::Status KvBlockPool::Reserve(int64_t blocks, absl::string_view what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (blocks > total_blocks_ - reserved_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv cache: ", what, " need ", blocks, " blocks of ", block_bytes_, " bytes; ",
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

absl::StatusOr<float*> KvBlockPool::AllocateReserved() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      float* block = free_.back();
      free_.pop_back();
      return block;
    }
  }
  float* block = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(block_bytes_)));
  if (block == nullptr) return absl::ResourceExhaustedError("kv cache: out of memory");
  return block;
}

void KvBlockPool::FreeReserved(float* block) {
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
                                                                   KvBlockPool* pool) {
  if (max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: expected >= 0 (0: no limit), got ", max_tokens));
  }
  ATTN_ASSIGN_OR_RETURN(const KvBlockPlan plan,
                        PlanKvBlocks(layout, batch, max_tokens, pool->block_bytes()));
  // Counted before any bookkeeping exists: an absurd batch costs nothing.
  const int64_t tokens = std::max<int64_t>(max_tokens, 1);
  const int64_t blocks = plan.BlocksFor(tokens);
  ATTN_RETURN_IF_ERROR(pool->Reserve(blocks, absl::StrCat(batch, " rows x ", tokens, " tokens")));
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(layout, batch, plan, blocks, pool));
}

PagedKvCache::~PagedKvCache() {
  for (float* b : blocks_) pool_->FreeReserved(b);
  pool_->Unreserve(reserved_);
}

absl::Status PagedKvCache::Reserve(int64_t tokens) {
  const int64_t need = plan_.BlocksFor(length_ + tokens);
  const int64_t have = blocks_held(), reserved = reserved_;
  if (need > reserved_) {
    ATTN_RETURN_IF_ERROR(pool_->Reserve(
        need - reserved_, absl::StrCat(batch_, " rows x ", tokens, " more tokens")));
    reserved_ = need;
  }
  while (blocks_held() < need) {
    absl::StatusOr<float*> block = pool_->AllocateReserved();
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
  return absl::OkStatus();
}

}  // namespace attention
