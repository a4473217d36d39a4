#include "core/decode.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/paged_attention.h"
#include "core/status_macros.h"
#include "core/threading.h"

namespace attention {

absl::StatusOr<std::unique_ptr<DecodeSession>> DecodeSession::Create(
    std::shared_ptr<const AttentionModule> module, int64_t batch, int64_t max_tokens,
    KvBlockPool* pool) {
  const DType kv_dtype = module->config().kv_cache_dtype;
  return Create(std::move(module), batch, max_tokens, kv_dtype, pool);
}

absl::StatusOr<std::unique_ptr<DecodeSession>> DecodeSession::Create(
    std::shared_ptr<const AttentionModule> module, int64_t batch, int64_t max_tokens,
    DType kv_dtype, KvBlockPool* pool) {
  ATTN_RETURN_IF_ERROR(CheckKvCacheDType(kv_dtype, "start.kv_cache_dtype"));
  if (batch < 1 || batch > kMaxConfigDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("start.batch: expected 1..", kMaxConfigDim, ", got ", batch));
  }
  if (max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("start.max_tokens: expected >= 0 (0: no limit), got ", max_tokens));
  }
  absl::StatusOr<std::unique_ptr<PagedKvCache>> cache =
      PagedKvCache::Create(CacheLayout(module->config(), kv_dtype), batch, max_tokens, pool,
                           module->config().sliding_window);
  if (!cache.ok()) {
    return absl::Status(cache.status().code(), absl::StrCat("start: ", cache.status().message()));
  }
  return std::unique_ptr<DecodeSession>(
      new DecodeSession(std::move(module), max_tokens, *std::move(cache)));
}

int64_t DecodeSession::StepWorkingBytes(int64_t t_new) const {
  // Float counts in double: no overflow; the bound saturates.
  const ModuleConfig& c = module_->config();
  const KvLayout& layout = cache_->layout();
  const double m = static_cast<double>(cache_->batch()) * static_cast<double>(t_new);
  const double hq = static_cast<double>(NumQueryHeads(c));
  const double hkv = static_cast<double>(layout.heads);
  const double dk = static_cast<double>(layout.k_width), dv = static_cast<double>(layout.v_width);
  double floats = 0;  // per token and row: what DecodeStep allocates
  if (c.variant == Variant::kMla) {
    const double dq = static_cast<double>(c.qk_nope_head_dim + c.qk_rope_head_dim);
    // q, q_a, latent, absorbed q, latent output, per-head output.
    floats = hq * dq + static_cast<double>(c.q_lora_rank) + dk + hq * dk + hq * dv +
             hq * static_cast<double>(c.v_head_dim);
  } else {
    floats = hq * dk + hkv * (dk + dv) + hq * dv;  // q, k, v, attention output
  }
  floats = m * (floats + static_cast<double>(OutputDim(c)));
  // PagedSdpa's per-thread scratch (paged_attention.h).
  const double tile =
      std::min(hq / hkv * static_cast<double>(t_new), static_cast<double>(kPagedRowTile));
  const double lk = static_cast<double>(cache_->length()) + static_cast<double>(t_new);
  const double span = c.sliding_window > 0
                          ? std::min(lk, static_cast<double>(t_new) - 1 +
                                             static_cast<double>(c.sliding_window))
                          : lk;  // PagedScoreSpan, in double
  floats += static_cast<double>(ComputeThreads()) * tile * (span + 2 * dv);
  if (layout.dtype != DType::kFloat32) {  // a run's rows as float32 (GEMM path)
    floats += static_cast<double>(ComputeThreads()) *
              static_cast<double>(cache_->plan().chunk_tokens) * std::max(dk, dv);
  }
  const double bytes = floats * 4;
  return bytes > 9e18 ? INT64_MAX : static_cast<int64_t>(bytes);
}

int64_t DecodeSession::kv_cache_bytes() const {
  return cache_->head_rows_held() * cache_->layout().HeadRowBytes();
}

absl::StatusOr<DecodeStepResult> DecodeSession::Step(const Tensor& tokens) {
  const ModuleConfig& c = module_->config();
  const int64_t batch = cache_->batch();
  if (tokens.rank() != 3 || tokens.dim(0) != batch || tokens.dim(1) < 1 ||
      tokens.dim(2) != c.d_model) {
    return absl::InvalidArgumentError(absl::StrCat("tokens: expected [B = ", batch,
                                                   ", T >= 1, d_model = ", c.d_model, "], got ",
                                                   ShapeString(tokens.shape())));
  }
  const int64_t t_new = tokens.dim(1), l0 = cache_->length();
  if (max_tokens_ > 0 && l0 + t_new > max_tokens_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tokens: ", l0, " cached + ", t_new, " new would pass start.max_tokens = ", max_tokens_));
  }
  DecodeStepResult result;
  ATTN_ASSIGN_OR_RETURN(result.output, module_->DecodeStep(*cache_, tokens));
  result.flops = LayerFlops(c, batch, t_new, l0 + t_new, t_new, true,
                            c.variant == Variant::kMla ? MlaForm::kAbsorbed : MlaForm::kNaive);
  return result;
}

}  // namespace attention
