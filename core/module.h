// Whole attention layers of the reference designs (core/config.h has the
// variants and their PyTorch state_dict names), created from a state_dict or
// a seed.
//
// Forward shapes:
//   query   [B, Lq, d_model]
//   key     [B, Lk, d_model]  (absent: query — self-attention)
//   value   [B, Lk, d_model]  (absent: key; mla takes keys and values from key)
//   output  [B, Lq, d_model]  (self_attention: [B, Lq, d_v])
//   weights [B, H, Lq, Lk]    (H = 1 for self_attention)
// The mask is that of sdpa.h, broadcast to [B, H, Lq, Lk]. mla normalises
// with RMSNorm (eps 1e-6), applies rotate-half RoPE to q_rope and the shared
// k_rope, and scales scores by 1/sqrt(qk_nope_head_dim + qk_rope_head_dim).
//
// Modules are immutable after creation; Forward may be called concurrently.
#ifndef ATTENTION_CORE_MODULE_H_
#define ATTENTION_CORE_MODULE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config.h"
#include "core/cost_model.h"
#include "core/kv_cache.h"
#include "core/sdpa.h"
#include "core/tensor.h"

namespace attention {
namespace internal {
struct WeightRef;
}  // namespace internal

using WeightMap = std::map<std::string, Tensor>;

struct ForwardInput {
  ConstTensorRef query;
  ConstTensorRef key;    // optional
  ConstTensorRef value;  // optional
  MaskSpec mask;
  bool return_weights = false;
  MlaForm mla_form = MlaForm::kNaive;
  // Position of the first query (and key) token for rotary embeddings
  // (config.rope); >= 0.
  int64_t position_offset = 0;
  // Optional destinations (the server's response buffers): when set, the
  // output [B, Lq, OutputDim] / the weights [B, H, Lq, Lk] are written there
  // and the result's tensors stay empty.
  float* output = nullptr;
  float* weights = nullptr;
};

struct ForwardResult {
  Tensor output;     // [B, Lq, OutputDim], unless ForwardInput::output was set
  Tensor weights;    // [B, H, Lq, Lk] when asked for (and not written to ForwardInput::weights)
  double flops = 0;  // LayerFlops of the call: multiply-adds × 2 of projections and attention
};

class AttentionModule {
 public:
  // Takes the state_dict by value. INVALID_ARGUMENT for a bad config or for
  // a missing, unexpected, duplicated (W_q and w_q) or mis-shaped tensor,
  // naming it with expected and actual shape.
  static absl::StatusOr<std::unique_ptr<AttentionModule>> Create(const ModuleConfig& config,
                                                                 WeightMap weights);
  // Deterministic init from `seed`: nn.Linear's U(-1/sqrt(in), 1/sqrt(in)) for
  // weights and biases, ones for RMSNorm weights, zeros for sinks.
  static absl::StatusOr<std::unique_ptr<AttentionModule>> CreateRandom(const ModuleConfig& config,
                                                                       uint64_t seed);

  virtual ~AttentionModule() = default;
  AttentionModule(const AttentionModule&) = delete;
  AttentionModule& operator=(const AttentionModule&) = delete;

  const ModuleConfig& config() const { return config_; }
  // Canonical names (W_q, not w_q) to tensors, in float32: a bf16-compute
  // module's matrices are widened from the bfloat16 it holds.
  WeightMap weights() const;
  // Bytes the parameters take as held (bf16 compute: matrices 2 bytes per
  // value, biases and norms 4).
  int64_t parameter_bytes() const;
  int64_t parameter_count() const { return ParameterCount(config_); }
  int64_t kv_cache_bytes_per_token() const { return KvCacheBytesPerToken(config_); }

  // Errors: INVALID_ARGUMENT naming "query", "key", "value" or "mask.*".
  virtual absl::StatusOr<ForwardResult> Forward(const ForwardInput& input) const = 0;

  // One streaming-decode step: appends `tokens` [B, T, d_model] (absolute
  // positions cache.length() .. + T - 1) to `cache` and returns the layer's
  // output [B, T, OutputDim] of causal attention over everything cached, so
  // successive steps equal one causal Forward over their concatenation. MLA
  // caches only its latent and attends in the absorbed form. The cache must
  // have the layout of CacheLayout(config(), any KV dtype) and B rows
  // (checked by DecodeSession). A layer with a sliding window W ends its
  // step with cache.DropBefore(cache.length() - W + 1) (kv_cache.h), so
  // its cache holds a bounded number of blocks however long it runs.
  // RESOURCE_EXHAUSTED (KV budget) leaves the cache unchanged.
  virtual absl::StatusOr<Tensor> DecodeStep(PagedKvCache& cache, const Tensor& tokens) const = 0;

 protected:
  // With config.compute_dtype bf16 the matrices (2-D weights) are rounded
  // to bfloat16 and held only so.
  AttentionModule(ModuleConfig config, WeightMap weights);
  // A bias or norm weight (float32 always).
  const Tensor& W(const std::string& name) const { return weights_.at(name); }
  // A matrix, in the dtype it is held in.
  internal::WeightRef Matrix(const std::string& name) const;
  bool bf16_compute() const { return config_.compute_dtype == DType::kBfloat16; }
  // Sdpa's compute dtype for the attention of Forward (its operands, the
  // projections, are already rounded to bf16 in bf16 compute).
  DType attention_dtype() const { return bf16_compute() ? DType::kBfloat16 : DType::kFloat32; }

 private:
  struct Bf16Matrix {
    std::vector<int64_t> shape;
    std::vector<uint16_t> values;
  };
  ModuleConfig config_;
  WeightMap weights_;                       // all, or (bf16) all but the matrices
  std::map<std::string, Bf16Matrix> bf16_;  // bf16 compute: the matrices
};

}  // namespace attention

#endif  // ATTENTION_CORE_MODULE_H_
