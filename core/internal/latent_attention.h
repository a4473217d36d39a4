// Private: the mla layer (DeepSeek-V2 multi-head latent attention; weights
// in core/config.h, norms and RoPE in core/module.h). Forward attends in the naive form
// (per-head K and V up-projected from the latent) or the absorbed form
// (W_UK folded into the query, W_UV into the output, attention over the
// latent); decode caches only the latent and attends absorbed.
#ifndef ATTENTION_CORE_INTERNAL_LATENT_ATTENTION_H_
#define ATTENTION_CORE_INTERNAL_LATENT_ATTENTION_H_

#include <memory>

#include "core/config.h"
#include "core/module.h"

namespace attention::internal {

// The layer of a valid mla config over its checked weights
// (AttentionModule::Create checks both).
std::unique_ptr<AttentionModule> MakeLatentAttention(const ModuleConfig& config, WeightMap weights);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_LATENT_ATTENTION_H_
