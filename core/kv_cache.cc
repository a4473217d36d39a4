#include "core/kv_cache.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "core/internal/gemm.h"
#include "core/internal/softmax.h"
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
  absl::MutexLock lock(&mu_);
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
  absl::MutexLock lock(&mu_);
  free_.push_back(block);
  --used_;
}

int64_t KvBlockPool::used_blocks() const {
  absl::MutexLock lock(&mu_);
  return used_;
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvLayout& layout,
                                                                   int64_t batch,
                                                                   KvBlockPool* pool) {
  const int64_t bytes_per_token = layout.FloatsPerToken() * 4;
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
  std::vector<std::pair<int64_t, float*>> added;
  for (int64_t b = 0; b < batch_; ++b) {
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

absl::Status PagedSdpa(const View4& q, const PagedKvCache& cache, float scale,
                       const MutView4& out) {
  using internal::Mat;
  const KvLayout& layout = cache.layout();
  const int64_t batch = q.dims[0], hq = q.dims[1], t_new = q.dims[2], dk = q.dims[3];
  const int64_t hkv = layout.heads, dv = layout.v_width, lk = cache.length();
  const int64_t tpb = cache.tokens_per_block();
  if (batch != cache.batch() || dk != layout.k_width || hq % hkv != 0 || t_new > lk ||
      out.dims[3] != dv) {
    return absl::InternalError(absl::StrCat("PagedSdpa: query ", ShapeString(q.dims),
                                            " does not match the cache"));
  }
  const int64_t group = hq / hkv, rows = group * t_new;
  const int64_t nblocks = (lk + tpb - 1) / tpb;
  // The G heads' rows form one strided matrix when T == 1 or heads are
  // consecutive [T, D] blocks.
  auto merged = [&](const int64_t* s) -> int64_t {
    if (t_new == 1) return s[1];
    return s[1] == t_new * s[2] ? s[2] : 0;
  };
  const int64_t q_rows = merged(q.strides), o_rows = merged(out.strides);

  absl::Mutex error_mu;
  absl::Status error;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(rows * lk));
    std::vector<float> acc(static_cast<size_t>(rows * dv)), part(static_cast<size_t>(rows * dv));
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < batch * hkv; ++job) {
      const int64_t b = job / hkv, g = job % hkv;
      absl::Status status;
      // Scores, block by block: S[:, blk] = Q · K_blkᵀ.
      for (int64_t blk = 0; blk < nblocks && status.ok(); ++blk) {
        const int64_t n = std::min(tpb, lk - blk * tpb);
        const Mat kt = Mat::Transposed(cache.K(b, g, blk * tpb), dk, n, layout.k_width);
        if (q_rows != 0) {
          status = internal::Matmul(Mat::RowMajor(q.Row(b, g * group, 0), rows, dk, q_rows), kt,
                                    scores.data() + blk * tpb, lk);
        } else {
          for (int64_t hl = 0; hl < group && status.ok(); ++hl) {
            status = internal::Matmul(
                Mat::RowMajor(q.Row(b, g * group + hl, 0), t_new, dk, q.strides[2]), kt,
                scores.data() + hl * t_new * lk + blk * tpb, lk);
          }
        }
      }
      for (int64_t r = 0; r < rows && status.ok(); ++r) {
        const int64_t t = r % t_new;
        internal::MaskedSoftmaxRow(scores.data() + r * lk, lk, scale, t + lk - t_new + 1, nullptr,
                                   0);
      }
      // O = Σ_blk P[:, blk] · V_blk.
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t blk = 0; blk < nblocks && status.ok(); ++blk) {
        const int64_t n = std::min(tpb, lk - blk * tpb);
        status = internal::Matmul(Mat::RowMajor(scores.data() + blk * tpb, rows, n, lk),
                                  Mat::RowMajor(cache.V(b, g, blk * tpb), n, dv, cache.v_stride()),
                                  part.data(), dv);
        for (size_t i = 0; i < acc.size(); ++i) acc[i] += part[i];
      }
      if (!status.ok()) {
        absl::MutexLock lock(&error_mu);
        if (error.ok()) error = status;
        continue;
      }
      for (int64_t hl = 0; hl < group; ++hl) {
        for (int64_t t = 0; t < t_new; ++t) {
          float* dst = o_rows != 0 ? out.Row(b, g * group, 0) + (hl * t_new + t) * o_rows
                                   : out.Row(b, g * group + hl, t);
          std::memcpy(dst, acc.data() + (hl * t_new + t) * dv, dv * sizeof(float));
        }
      }
    }
  }
  return error;
}

}  // namespace attention
