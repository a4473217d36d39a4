// The configuration of an attention layer and what follows from it without
// computing anything: validation, head counts and widths, the state_dict
// schema (PyTorch names, nn.Linear layout: weight [out, in], y = x Wᵀ + b)
// and the sizes of weights and KV cache.
//
//   self_attention  one head, d_k != d_v allowed, no output projection:
//                   w_q [d_k, d_model], w_k [d_k, d_model], w_v [d_v, d_model]
//   mha             W_q [H·d_head, d_model], W_k, W_v [H·d_head, d_model],
//                   W_o [d_model, H·d_head]; H heads of d_head = head_dim, or
//                   d_model / H (lower-case w_q... accepted on load)
//   gqa             as mha with W_k, W_v [Hkv·d_head, d_model]; query head h
//                   uses kv head h/(Hq/Hkv)
//   mqa             gqa with Hkv = 1
//   mla             DeepSeek-V2 multi-head latent attention, no biases:
//                   q_proj [H·(dn+dr), d_model], or q_a_proj [qr, d_model],
//                   q_a_layernorm [qr], q_b_proj [H·(dn+dr), qr];
//                   kv_a_proj_with_mqa [r+dr, d_model], kv_a_layernorm [r],
//                   kv_b_proj [H·(dn+dv), r], o_proj [d_model, H·dv]
//                   (r kv_lora_rank, qr q_lora_rank, dn qk_nope_head_dim,
//                   dr qk_rope_head_dim, dv v_head_dim)
// Biases (`*.bias`, [out]) exist for all but mla when config.bias is true.
// mha/gqa/mqa layers may add q_norm.weight, k_norm.weight [d_head]
// (qk_norm) and sinks [H] (attention_sinks).
//
// Every function here is pure arithmetic (no oneDNN) and thread-safe. The
// functions below ValidateConfig expect a valid config, whose dimensions are
// small enough (kMaxConfigDim) that no size computed from them overflows.
#ifndef ATTENTION_CORE_CONFIG_H_
#define ATTENTION_CORE_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/dtype.h"

namespace attention {

enum class Variant { kSelfAttention, kMha, kGqa, kMqa, kMla };

// "self_attention", "mha", "gqa", "mqa", "mla" (the contract's field names).
const char* VariantFieldName(Variant variant);

// Rotary position embeddings of an mha, gqa or mqa layer (mla has its own
// fields): NeoX rotate-half (Llama, Qwen, Mistral) or GPT-J interleaved
// pairs, over the first rotary_dim dims of each query and key head.
enum class RopeStyle { kNone, kNeox, kGptj };

// Frequency scaling of long-context checkpoints, as Hugging Face's
// rope_parameters (rope_type linear, llama3 or yarn) compute it from the
// base frequencies inv_freq[k] = theta^(-2k/d):
//   linear  inv_freq / factor
//   llama3  wavelengths above original_max_position / low_freq_factor
//           divided by factor, below original_max_position /
//           high_freq_factor kept, smoothed in between (Llama 3.1+)
//   yarn    interpolation (inv_freq / factor) and extrapolation blended by a
//           linear ramp between the correction dims of beta_fast and
//           beta_slow rotations over original_max_position (floored and
//           ceiled when truncate), and cos, sin multiplied by
//           attention_factor (0: 0.1·mscale·ln(factor) + 1 over the same
//           with mscale_all_dim when both are set, else 0.1·ln(factor) +
//           1); gpt-oss, Qwen2.5, DeepSeek-V2/V3. An mla layer's softmax
//           scale is also multiplied by (0.1·mscale_all_dim·ln(factor) +
//           1)² when mscale_all_dim is set, as DeepSeek's.
enum class RopeScalingType { kNone, kLinear, kLlama3, kYarn };
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 0.0;                // > 0
  int64_t original_max_position = 0;  // llama3, yarn: >= 1
  double low_freq_factor = 0.0;       // llama3 (0: 1)
  double high_freq_factor = 0.0;      // llama3 (0: 4)
  double beta_fast = 0.0;             // yarn (0: 32)
  double beta_slow = 0.0;             // yarn (0: 1)
  double attention_factor = 0.0;      // yarn (0: from mscale and mscale_all_dim)
  double mscale = 0.0;                // yarn (0: unset)
  double mscale_all_dim = 0.0;        // yarn (0: unset)
  bool truncate = true;               // yarn
};

struct RopeConfig {
  RopeStyle style = RopeStyle::kNone;
  double theta = 0.0;      // 0: 10000
  int64_t rotary_dim = 0;  // 0: the head width; else even and <= it
  RopeScaling scaling;
};

struct ModuleConfig {
  Variant variant = Variant::kMha;
  int64_t d_model = 0;
  bool bias = true;  // ignored by mla (no biases)
  // self_attention
  int64_t d_k = 0, d_v = 0;
  // mha, mqa: num_heads; gqa: num_heads is num_q_heads, plus num_kv_heads.
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  // mha, gqa, mqa: the width of each head, d_head; 0: d_model / num_heads
  // (which must then divide). Gemma 2, Qwen3 and gpt-oss checkpoints have
  // H · d_head != d_model: W_q [H·d_head, d_model], W_o [d_model, H·d_head].
  int64_t head_dim = 0;
  // mla
  int64_t q_lora_rank = 0;  // 0: q_proj, no query compression
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double rope_theta = 0.0;  // 0: 10000
  // mla: the checkpoint's rope rows (each head's qk_rope_head_dim rows of
  // q_proj / q_b_proj, the last qk_rope_head_dim rows of
  // kv_a_proj_with_mqa) rotate as interleaved pairs (x[2i], x[2i+1]), as
  // Hugging Face's DeepSeek-V2 and V3 apply RoPE; the module reorders those
  // rows to evens then odds on creation, after which rotate-half RoPE gives
  // the same scores.
  bool mla_rope_interleave = false;
  // mla: frequency scaling of its RoPE (see RopeScaling).
  RopeScaling mla_rope_scaling;
  // How Decode caches K and V (mla: the latent): kFloat32, kBfloat16,
  // kFloat16 or kInt8 (kv_cache.h).
  DType kv_cache_dtype = DType::kFloat32;
  // Matrix products: kFloat32, or kBfloat16 (weights held in bf16; the
  // products' operands rounded to bf16, accumulation, softmax and norms in
  // float32).
  DType compute_dtype = DType::kFloat32;
  // mha, gqa, mqa: rotary embeddings of q and k (positions 0.. in Forward,
  // plus ForwardInput::position_offset; the absolute index in Decode).
  RopeConfig rope;
  // mha, gqa, mqa: RMSNorm over each head of q and k (weights q_norm.weight,
  // k_norm.weight [d_head]) before RoPE, as Qwen3; its epsilon (0: 1e-6).
  bool qk_norm = false;
  double norm_eps = 0.0;
  // mha, gqa, mqa: the scores' scale (0: 1/sqrt(d_head)).
  double scale = 0.0;
  // mha, gqa, mqa: whether W_o has a bias (Qwen2: q/k/v biases, none on
  // o_proj); unset: `bias` (HasOutputBias).
  std::optional<bool> output_bias;
  // mha, gqa, mqa: a sliding window of W keys (the token at position p sees
  // p − W + 1 .. p; Mistral, Gemma 2's local layers; 0: none). Decode keeps
  // only the last W tokens of a stream (kv_cache.h).
  int64_t sliding_window = 0;
  // mha, gqa, mqa: logit soft-cap c (s <- c·tanh(s / c) on the scaled
  // scores; Gemma 2; 0: none).
  double logit_softcap = 0.0;
  // mha, gqa, mqa: one learned logit per query head (weight `sinks` [H])
  // joins each softmax row (gpt-oss).
  bool attention_sinks = false;
};

// Whether W_o has a bias: config.output_bias, or config.bias when unset.
inline bool HasOutputBias(const ModuleConfig& c) { return c.output_bias.value_or(c.bias); }

// How mla attends (the other variants have one form).
enum class MlaForm {
  kNaive,     // up-project c_KV into per-head K and V, attend per head
  kAbsorbed,  // W_UK folded into the query, W_UV into the output, attend over the latent
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
// Per-head widths Dk and Dv of that attention: self_attention d_k, d_v;
// mha/gqa/mqa d_model / H both; mla (naive) qk_nope + qk_rope, v_head_dim.
int64_t HeadDimK(const ModuleConfig& config);
int64_t HeadDimV(const ModuleConfig& config);
// Width of the layer's output: d_v for self_attention, else d_model.
int64_t OutputDim(const ModuleConfig& config);

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// The state_dict of a valid config, in a fixed order.
std::vector<WeightSpec> ExpectedWeights(const ModuleConfig& config);
// Values in ExpectedWeights(config).
int64_t ParameterCount(const ModuleConfig& config);
// Bytes those values take as a module of `config` holds them: 4 each, or
// with bf16 compute 2 for the matrices (biases and norms stay float32).
int64_t ParameterBytes(const ModuleConfig& config);
// Bytes the KV cache holds per token (one batch row) in `kv_dtype`:
// Hkv·(Dk + Dv) elements (MHA 2·H·d_head, GQA 2·Hkv·d_head, MQA 2·d_head,
// self_attention d_k + d_v), MLA kv_lora_rank + qk_rope_head_dim; times the
// element size (4, 2, 2, 1), plus for kInt8 a float32 scale per row of
// each kv head (K and V: 8 bytes; MLA's one latent row: 4).
int64_t KvCacheBytesPerToken(const ModuleConfig& config, DType kv_dtype);
// In config.kv_cache_dtype.
int64_t KvCacheBytesPerToken(const ModuleConfig& config);
// OK for a valid RopeScaling (see there), else INVALID_ARGUMENT naming
// `field` and the member ("config.rope.scaling.factor: ...").
absl::Status CheckRopeScaling(const RopeScaling& scaling, absl::string_view field);
// OK if `dtype` is a KV-cache storage type (FLOAT32, BFLOAT16, FLOAT16,
// INT8), else INVALID_ARGUMENT naming `field`.
absl::Status CheckKvCacheDType(DType dtype, absl::string_view field);
// OK for FLOAT32 and BFLOAT16; FLOAT16 is FAILED_PRECONDITION (this build's
// oneDNN has no float16 matmul on CPUs: the message names the ISA it needs);
// anything else INVALID_ARGUMENT. Each names `field`.
absl::Status CheckComputeDType(DType dtype, absl::string_view field);

}  // namespace attention

#endif  // ATTENTION_CORE_CONFIG_H_
