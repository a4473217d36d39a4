#include "core/kv_cache.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "core/cancellation.h"
#include "core/internal/gemm.h"
#include "core/internal/row_attention.h"
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

namespace {

constexpr int64_t kRowTile = 32;  // query rows sharing one pass over the cache
static_assert(kRowTile <= internal::kMaxFewRows, "a decode tile must fit AttendFewRows");

}  // namespace

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
  // Rows of kv head g are its G query heads × T new tokens, head-major. A
  // tile is up to kRowTile rows with one stride (so it can be a GEMM
  // operand): across heads when T == 1 or heads are consecutive [T, D]
  // blocks in both query and output, else within one head.
  const int64_t group = hq / hkv, rows = group * t_new;
  auto uniform = [&](const int64_t* st) -> int64_t {
    if (t_new == 1) return st[1];
    return st[1] == t_new * st[2] ? st[2] : 0;
  };
  const bool across_heads = uniform(q.strides) != 0 && uniform(out.strides) != 0;
  const int64_t qs = across_heads ? uniform(q.strides) : q.strides[2];
  const int64_t os = across_heads ? uniform(out.strides) : out.strides[2];
  const int64_t tiles_per_head = (t_new + kRowTile - 1) / kRowTile;
  const int64_t tiles = across_heads ? (rows + kRowTile - 1) / kRowTile : group * tiles_per_head;

  std::mutex error_mu;
  absl::Status error;
  const int64_t total_jobs = batch * hkv * tiles;
  const CancellationCheck* cancel = CurrentCancellation();
  const int team = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), total_jobs));
#pragma omp parallel num_threads(team)
  {
    const int64_t max_rows = std::min(rows, kRowTile);
    std::vector<float> scores(static_cast<size_t>(max_rows * lk));
    std::vector<float> acc(static_cast<size_t>(max_rows * dv)), part(acc.size());
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < batch * hkv * tiles; ++job) {
      const int64_t b = job / (hkv * tiles), g = job / tiles % hkv, tile = job % tiles;
      if (absl::Status c = PollCancellation(cancel); !c.ok()) {  // between tiles
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.ok()) error = c;
        continue;
      }
      // First row (head hl0, token t0) and row count of the tile.
      int64_t hl0, t0, nr;
      if (across_heads) {
        const int64_t r0 = tile * kRowTile;
        hl0 = r0 / t_new;
        t0 = r0 % t_new;
        nr = std::min(kRowTile, rows - r0);
      } else {
        hl0 = tile / tiles_per_head;
        t0 = tile % tiles_per_head * kRowTile;
        nr = std::min(kRowTile, t_new - t0);
      }
      const float* q0 = q.Row(b, g * group + hl0, t0);
      float* o0 = out.Row(b, g * group + hl0, t0);
      int64_t visible[kRowTile];
      int64_t kmax = 0;
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t t = across_heads ? (hl0 * t_new + t0 + i) % t_new : t0 + i;
        visible[i] = t + lk - t_new + 1;  // causal, bottom-right
        kmax = std::max(kmax, visible[i]);
      }
      const int64_t nblocks = (kmax + tpb - 1) / tpb;
      absl::Status status;
      if (!internal::TakesFewRows(t_new, nr)) {
        // Many new tokens: a GEMM per block for scores and for values.
        for (int64_t blk = 0; blk < nblocks && status.ok(); ++blk) {
          const int64_t n = std::min(tpb, kmax - blk * tpb);
          status = internal::Matmul(Mat::RowMajor(q0, nr, dk, qs),
                                    Mat::Transposed(cache.K(b, g, blk * tpb), dk, n, layout.k_width),
                                    scores.data() + blk * tpb, lk);
        }
        for (int64_t i = 0; i < nr && status.ok(); ++i) {
          internal::MaskedSoftmaxRow(scores.data() + i * lk, kmax, scale, visible[i], nullptr, 0);
        }
        std::fill(acc.begin(), acc.begin() + nr * dv, 0.0f);
        for (int64_t blk = 0; blk < nblocks && status.ok(); ++blk) {
          const int64_t n = std::min(tpb, kmax - blk * tpb);
          status = internal::Matmul(
              Mat::RowMajor(scores.data() + blk * tpb, nr, n, lk),
              Mat::RowMajor(cache.V(b, g, blk * tpb), n, dv, cache.v_stride()), part.data(), dv);
          for (int64_t x = 0; x < nr * dv; ++x) acc[x] += part[x];
        }
        for (int64_t i = 0; i < nr && status.ok(); ++i) {
          std::memcpy(o0 + i * os, acc.data() + i * dv, dv * sizeof(float));
        }
      } else {
        // Decode: each cached key and value row is read once for all rows
        // (from L2 for each group of rows past kFewRows).
        const float* q_rows[kRowTile];
        float* s_rows[kRowTile];
        float* o_rows[kRowTile];
        // Score rows of one key block, packed (rows Lk apart would fall in
        // the same cache sets).
        const int64_t s_stride = std::min(lk, internal::FewRowsKeyBlock(nr, dk, dv));
        for (int64_t i = 0; i < nr; ++i) {
          q_rows[i] = q0 + i * qs;
          s_rows[i] = scores.data() + i * s_stride;
          o_rows[i] = o0 + i * os;
        }
        internal::AttendFewRows(
            nr, q_rows, dk, dv, kmax, visible, nullptr, 0, scale,
            [&](int64_t j) {
              return internal::RowRun{cache.K(b, g, j), layout.k_width, tpb - j % tpb};
            },
            [&](int64_t j) {
              return internal::RowRun{cache.V(b, g, j), cache.v_stride(), tpb - j % tpb};
            },
            s_rows, acc.data(), o_rows, /*weights_out=*/false);
      }
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.ok()) error = status;
      }
    }
  }
  return error;
}

}  // namespace attention
