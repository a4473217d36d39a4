// Private: the self_attention, mha, gqa and mqa layers (core/config.h has
// their weights): project Q, K, V, attend over the heads with Sdpa, project
// out (self_attention has no output projection). Decode caches K and V of
// the Hkv heads.
#ifndef ATTENTION_CORE_INTERNAL_PROJECTED_ATTENTION_H_
#define ATTENTION_CORE_INTERNAL_PROJECTED_ATTENTION_H_

#include <memory>

#include "core/config.h"
#include "core/module.h"

namespace attention::internal {

// The layer of a valid non-mla config over its checked, canonically named
// weights (AttentionModule::Create checks both).
std::unique_ptr<AttentionModule> MakeProjectedAttention(const ModuleConfig& config,
                                                        WeightMap weights);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_PROJECTED_ATTENTION_H_
