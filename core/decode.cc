#include "core/decode.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace attention {

absl::StatusOr<std::unique_ptr<DecodeSession>> DecodeSession::Create(
    std::shared_ptr<const AttentionModule> module, int64_t batch, int64_t max_tokens,
    KvBlockPool* pool) {
  if (batch < 1 || batch > kMaxConfigDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("start.batch: expected 1..", kMaxConfigDim, ", got ", batch));
  }
  if (max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("start.max_tokens: expected >= 0 (0: no limit), got ", max_tokens));
  }
  ATTN_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvCache> cache,
                        PagedKvCache::Create(CacheLayout(module->config()), batch, pool));
  return std::unique_ptr<DecodeSession>(
      new DecodeSession(std::move(module), max_tokens, std::move(cache)));
}

int64_t DecodeSession::kv_cache_bytes() const {
  return cache_->length() * cache_->batch() * module_->kv_cache_bytes_per_token();
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
    return absl::FailedPreconditionError(
        absl::StrCat("tokens: ", l0, " cached + ", t_new, " new would pass start.max_tokens = ",
                     max_tokens_));
  }
  DecodeStepResult result;
  ATTN_ASSIGN_OR_RETURN(result.output, module_->DecodeStep(*cache_, tokens));
  result.flops = LayerFlops(c, batch, t_new, l0 + t_new, t_new, true,
                            c.variant == Variant::kMla ? MlaForm::kAbsorbed : MlaForm::kNaive);
  return result;
}

}  // namespace attention
