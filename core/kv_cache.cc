#include "core/kv_cache.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

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

absl::StatusOr<float*> KvBlockPool::Allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ >= total_blocks_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv cache: all ", total_blocks_, " blocks of ", block_bytes_,
        " bytes of the server's budget are in use (--kv_cache_mb)"));
  }
  float* block = nullptr;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else {
    block = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(block_bytes_)));
    if (block == nullptr) return absl::ResourceExhaustedError("kv cache: out of memory");
  }
  ++used_;
  return block;
}

void KvBlockPool::Release(float* block) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(block);
  --used_;
}

int64_t KvBlockPool::used_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvLayout& layout,
                                                                   int64_t batch,
                                                                   KvBlockPool* pool) {
  const int64_t bytes_per_token = layout.FloatsPerHeadToken() * 4;
  const int64_t tpb = pool->block_bytes() / bytes_per_token;
  if (tpb < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv cache: one token needs ", bytes_per_token, " bytes, more than a block of ",
        pool->block_bytes(), " (raise --kv_block_kb)"));
  }
  if (batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch: expected >= 1, got ", batch));
  }
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(layout, batch, tpb, pool));
}

PagedKvCache::~PagedKvCache() {
  for (auto& row : blocks_) {
    for (float* b : row) pool_->Release(b);
  }
}

int64_t PagedKvCache::blocks_held() const {
  int64_t n = 0;
  for (const auto& row : blocks_) n += static_cast<int64_t>(row.size());
  return n;
}

absl::Status PagedKvCache::Reserve(int64_t tokens) {
  const int64_t need = (length_ + tokens + tokens_per_block_ - 1) / tokens_per_block_;
  std::vector<std::pair<size_t, float*>> added;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    while (static_cast<int64_t>(blocks_[b].size()) < need) {
      absl::StatusOr<float*> block = pool_->Allocate();
      if (!block.ok()) {
        for (auto it = added.rbegin(); it != added.rend(); ++it) {  // undo
          blocks_[it->first].pop_back();
          pool_->Release(it->second);
        }
        return block.status();
      }
      blocks_[b].push_back(*block);
      added.emplace_back(b, *block);
    }
  }
  return absl::OkStatus();
}

}  // namespace attention
