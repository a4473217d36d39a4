// What a layer call costs, from its config and sizes alone: FLOPs, the bytes
// Forward allocates (for admission control) and the estimate the service
// reports. Pure arithmetic (no oneDNN), thread-safe; computed in double or
// saturating, so huge sizes never wrap.
#ifndef ATTENTION_CORE_COST_MODEL_H_
#define ATTENTION_CORE_COST_MODEL_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/config.h"

namespace attention {

// FLOPs of attention (core/sdpa.h): 2·B·Hq·Lq·Lk·(Dk + Dv), causal counts the
// visible half (exactly: the number of visible (i, j) pairs), and a sliding
// window W > 0 (causal too) the at most W keys each query sees.
double SdpaFlops(int64_t b, int64_t hq, int64_t lq, int64_t lk, int64_t dk, int64_t dv,
                 bool causal, int64_t window = 0);

// FLOPs (2 × multiply-adds of the matrix products; norms and RoPE are not
// counted) of one layer call: B rows of Lq queries against Lk keys, of which
// `kv_projected` per row are projected in this call (Forward: Lk; a decode
// step: the new tokens only). Causal counts visible pairs only, and a
// layer's sliding_window (causal or not) those within its window.
double LayerFlops(const ModuleConfig& config, int64_t b, int64_t lq, int64_t lk,
                  int64_t kv_projected, bool causal, MlaForm form);

// An upper bound of the bytes Forward allocates for a call of this size
// (decoded inputs, projections, attention buffers, output, weights), for
// admission control: checked before any of it is allocated.
int64_t ForwardWorkingBytes(const ModuleConfig& config, int64_t b, int64_t lq, int64_t lk,
                            bool return_weights);

struct CostEstimate {
  int64_t parameters = 0;
  int64_t kv_cache_bytes_per_token = 0;  // one batch row, float32
  int64_t kv_cache_bytes = 0;            // per_token × batch × seq_len
  double prefill_flops = 0;           // causal self-attention Forward of [batch, seq_len, d_model]
  double decode_flops_per_token = 0;  // one row, one new token after seq_len cached (MLA absorbed)
};

// Costs of a config without computing anything. INVALID_ARGUMENT for a bad
// config or batch/seq_len outside 0..2^31.
absl::StatusOr<CostEstimate> EstimateCosts(const ModuleConfig& config, int64_t batch,
                                           int64_t seq_len);

}  // namespace attention

#endif  // ATTENTION_CORE_COST_MODEL_H_
