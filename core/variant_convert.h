// Deriving the cheaper variants from an MHA layer, for the variant
// comparison's quality proxy (as the GQA and MLA papers do when they uptrain
// from MHA checkpoints):
//   GQA / MQA  mean-pool the K and V heads of each group (W_k, W_v rows and
//              biases); queries and W_o unchanged.
//   MLA        low-rank factorisation of the stacked K/V projection
//              [W_k; W_v] ≈ U · C (rank r, randomized subspace iteration):
//              C becomes the down-projection (kv_a_proj_with_mqa), U the
//              per-head up-projection (kv_b_proj), RMSNorm's weight the mean
//              latent RMS of a calibration input (so the norm is about the
//              identity), the decoupled RoPE parts zero, and the query
//              scaled by sqrt((d_head + rope) / d_head) to keep the softmax
//              scale. The MHA layer must have no biases (MLA has none).
#ifndef ATTENTION_CORE_VARIANT_CONVERT_H_
#define ATTENTION_CORE_VARIANT_CONVERT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/module.h"

namespace attention {

struct DerivedModule {
  ModuleConfig config;
  WeightMap weights;
};

// kv_heads must divide the MHA's heads (1: MQA).
absl::StatusOr<DerivedModule> PoolKvHeads(const AttentionModule& mha, int64_t kv_heads);

// calibration: [N, d_model] rows used to set the latent RMSNorm weight.
absl::StatusOr<DerivedModule> LowRankMla(const AttentionModule& mha, int64_t kv_lora_rank,
                                         int64_t rope_dim, const Tensor& calibration,
                                         uint64_t seed);

}  // namespace attention

#endif  // ATTENTION_CORE_VARIANT_CONVERT_H_
