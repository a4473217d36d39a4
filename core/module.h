// Whole attention layers of the reference designs, with PyTorch state_dict
// names and nn.Linear layout (weight [out, in], y = x Wᵀ + b).
//
//   self_attention  one head, d_k != d_v allowed, no output projection:
//                   w_q [d_k, d_model], w_k [d_k, d_model], w_v [d_v, d_model]
//   mha             W_q, W_k, W_v, W_o [d_model, d_model]; H heads of
//                   d_head = d_model / H (lower-case w_q... accepted on load)
//   gqa             W_q, W_o [d_model, d_model]; W_k, W_v [Hkv·d_head, d_model];
//                   d_head = d_model / Hq; query head h uses kv head h/(Hq/Hkv)
//   mqa             gqa with Hkv = 1
//   mla             DeepSeek-V2 multi-head latent attention, no biases:
//                   q_proj [H·(dn+dr), d_model], or q_a_proj [qr, d_model],
//                   q_a_layernorm [qr], q_b_proj [H·(dn+dr), qr];
//                   kv_a_proj_with_mqa [r+dr, d_model], kv_a_layernorm [r],
//                   kv_b_proj [H·(dn+dv), r], o_proj [d_model, H·dv]
//                   (r kv_lora_rank, qr q_lora_rank, dn qk_nope_head_dim,
//                   dr qk_rope_head_dim, dv v_head_dim); RMSNorm eps 1e-6;
//                   rotate-half RoPE on q_rope and the shared k_rope;
//                   scale 1/sqrt(dn + dr).
// Biases (`*.bias`, [out]) exist for all but mla when config.bias is true.
//
// Forward shapes:
//   query   [B, Lq, d_model]
//   key     [B, Lk, d_model]  (absent: query — self-attention)
//   value   [B, Lk, d_model]  (absent: key; mla takes keys and values from key)
//   output  [B, Lq, d_model]  (self_attention: [B, Lq, d_v])
//   weights [B, H, Lq, Lk]    (H = 1 for self_attention)
// The mask is that of sdpa.h, broadcast to [B, H, Lq, Lk].
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
#include "core/sdpa.h"
#include "core/tensor.h"

namespace attention {

class PagedKvCache;

enum class Variant { kSelfAttention, kMha, kGqa, kMqa, kMla };

// "self_attention", "mha", "gqa", "mqa", "mla" (the contract's field names).
const char* VariantFieldName(Variant variant);

struct ModuleConfig {
  Variant variant = Variant::kMha;
  int64_t d_model = 0;
  bool bias = true;  // ignored by mla (no biases)
  // self_attention
  int64_t d_k = 0, d_v = 0;
  // mha, mqa: num_heads; gqa: num_heads is num_q_heads, plus num_kv_heads.
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  // mla
  int64_t q_lora_rank = 0;  // 0: q_proj, no query compression
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double rope_theta = 0.0;  // 0: 10000
};

// Largest value any config dimension may take.
inline constexpr int64_t kMaxConfigDim = int64_t{1} << 20;

// INVALID_ARGUMENT naming the field ("config.gqa.num_kv_heads: ...") if the
// config is inconsistent.
absl::Status ValidateConfig(const ModuleConfig& config);

// Query heads H and key/value heads Hkv of the attention inside the layer
// (self_attention: 1, 1; mla: H, H in the naive form).
int64_t NumQueryHeads(const ModuleConfig& config);
int64_t NumKvHeads(const ModuleConfig& config);
// Width of the layer's output: d_v for self_attention, else d_model.
int64_t OutputDim(const ModuleConfig& config);

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// The state_dict of a valid config, in a fixed order.
std::vector<WeightSpec> ExpectedWeights(const ModuleConfig& config);
int64_t ParameterCount(const ModuleConfig& config);
// Float32 bytes the KV cache holds per token (one batch row): MHA 2·H·d_head,
// GQA 2·Hkv·d_head, MQA 2·d_head, self_attention d_k + d_v, MLA
// kv_lora_rank + qk_rope_head_dim; times 4.
int64_t KvCacheBytesPerToken(const ModuleConfig& config);

using WeightMap = std::map<std::string, Tensor>;

enum class MlaForm {
  kNaive,     // up-project c_KV into per-head K and V, attend per head
  kAbsorbed,  // W_UK folded into the query, W_UV into the output, attend over the latent
};

// FLOPs (2 × multiply-adds of the matrix products; norms and RoPE are not
// counted) of one layer call: B rows of Lq queries against Lk keys, of which
// `kv_projected` per row are projected in this call (Forward: Lk; a decode
// step: the new tokens only). Causal counts visible pairs only.
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
  double prefill_flops = 0;   // causal self-attention Forward of [batch, seq_len, d_model]
  double decode_flops_per_token = 0;  // one row, one new token after seq_len cached (MLA absorbed)
};

// Costs of a config without computing anything. INVALID_ARGUMENT for a bad
// config or batch/seq_len outside 0..2^31.
absl::StatusOr<CostEstimate> EstimateCosts(const ModuleConfig& config, int64_t batch,
                                           int64_t seq_len);

struct ForwardInput {
  ConstTensorRef query;
  ConstTensorRef key;    // optional
  ConstTensorRef value;  // optional
  MaskSpec mask;
  bool return_weights = false;
  MlaForm mla_form = MlaForm::kNaive;
  // Optional destinations (the server's response buffers): when set, the
  // output [B, Lq, OutputDim] / the weights [B, H, Lq, Lk] are written there
  // and the result's tensors stay empty.
  float* output = nullptr;
  float* weights = nullptr;
};

struct ForwardResult {
  Tensor output;   // [B, Lq, OutputDim], unless ForwardInput::output was set
  Tensor weights;  // [B, H, Lq, Lk] when asked for (and not written to ForwardInput::weights)
  double flops = 0;  // multiply-adds × 2 of projections and attention
};

class AttentionModule {
 public:
  // Takes the state_dict by value. INVALID_ARGUMENT for a bad config or for
  // a missing, unexpected, duplicated (W_q and w_q) or mis-shaped tensor,
  // naming it with expected and actual shape.
  static absl::StatusOr<std::unique_ptr<AttentionModule>> Create(const ModuleConfig& config,
                                                                 WeightMap weights);
  // Deterministic init from `seed`: nn.Linear's U(-1/sqrt(in), 1/sqrt(in)) for
  // weights and biases, ones for RMSNorm weights.
  static absl::StatusOr<std::unique_ptr<AttentionModule>> CreateRandom(const ModuleConfig& config,
                                                                       uint64_t seed);

  virtual ~AttentionModule() = default;
  AttentionModule(const AttentionModule&) = delete;
  AttentionModule& operator=(const AttentionModule&) = delete;

  const ModuleConfig& config() const { return config_; }
  // Canonical names (W_q, not w_q) to tensors.
  const WeightMap& weights() const { return weights_; }
  int64_t parameter_count() const { return ParameterCount(config_); }
  int64_t kv_cache_bytes_per_token() const { return KvCacheBytesPerToken(config_); }

  // Errors: INVALID_ARGUMENT naming "query", "key", "value" or "mask.*".
  virtual absl::StatusOr<ForwardResult> Forward(const ForwardInput& input) const = 0;

  // One streaming-decode step: appends `tokens` [B, T, d_model] (absolute
  // positions cache.length() .. + T - 1) to `cache` and returns the layer's
  // output [B, T, OutputDim] of causal attention over everything cached, so
  // successive steps equal one causal Forward over their concatenation. MLA
  // caches only its latent and attends in the absorbed form. The cache must
  // have CacheLayout(config()) and B rows (checked by DecodeSession).
  // RESOURCE_EXHAUSTED (KV budget) leaves the cache unchanged.
  virtual absl::StatusOr<Tensor> DecodeStep(PagedKvCache& cache, const Tensor& tokens) const = 0;

 protected:
  AttentionModule(ModuleConfig config, WeightMap weights)
      : config_(config), weights_(std::move(weights)) {}
  const Tensor& W(const std::string& name) const { return weights_.at(name); }

 private:
  ModuleConfig config_;
  WeightMap weights_;
};

}  // namespace attention

#endif  // ATTENTION_CORE_MODULE_H_
