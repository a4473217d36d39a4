#include "core/config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/tensor.h"

namespace attention {
namespace {

std::string Field(const ModuleConfig& c, const char* name) {
  return absl::StrCat("config.", VariantFieldName(c.variant), ".", name);
}

absl::Status CheckRange(const std::string& field, int64_t value, int64_t lo) {
  if (value < lo || value > kMaxConfigDim) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected ", lo, "..", kMaxConfigDim, ", got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckDivides(const std::string& field, int64_t divisor, const std::string& what,
                          int64_t value) {
  if (value % divisor != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must divide ", what, " = ", value, ", got ", divisor));
  }
  return absl::OkStatus();
}

}  // namespace

const char* VariantFieldName(Variant variant) {
  switch (variant) {
    case Variant::kSelfAttention:
      return "self_attention";
    case Variant::kMha:
      return "mha";
    case Variant::kGqa:
      return "gqa";
    case Variant::kMqa:
      return "mqa";
    case Variant::kMla:
      return "mla";
  }
  return "?";
}

absl::Status CheckRopeScaling(const RopeScaling& s, absl::string_view field) {
  if (s.type == RopeScalingType::kNone) return absl::OkStatus();
  auto finite_at_least = [&](const char* name, double v, double min) -> absl::Status {
    if (std::isfinite(v) && v >= min) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".", name, ": expected a finite value >= ", min, ", got ", v));
  };
  if (!(std::isfinite(s.factor) && s.factor > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".factor: expected a finite value > 0, got ", s.factor));
  }
  ATTN_RETURN_IF_ERROR(finite_at_least("low_freq_factor", s.low_freq_factor, 0));
  ATTN_RETURN_IF_ERROR(finite_at_least("high_freq_factor", s.high_freq_factor, 0));
  ATTN_RETURN_IF_ERROR(finite_at_least("beta_fast", s.beta_fast, 0));
  ATTN_RETURN_IF_ERROR(finite_at_least("beta_slow", s.beta_slow, 0));
  ATTN_RETURN_IF_ERROR(finite_at_least("attention_factor", s.attention_factor, 0));
  ATTN_RETURN_IF_ERROR(finite_at_least("mscale", s.mscale, 0));
  ATTN_RETURN_IF_ERROR(finite_at_least("mscale_all_dim", s.mscale_all_dim, 0));
  if (s.type == RopeScalingType::kLinear) return absl::OkStatus();
  if (s.original_max_position < 1 || s.original_max_position > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".original_max_position: expected 1..2^40 for llama3 and yarn, got ",
                     s.original_max_position));
  }
  if (s.type == RopeScalingType::kLlama3) {
    const double low = s.low_freq_factor == 0 ? 1.0 : s.low_freq_factor;
    const double high = s.high_freq_factor == 0 ? 4.0 : s.high_freq_factor;
    if (!(high > low)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".high_freq_factor: expected more than low_freq_factor (", low, "), got ", high));
    }
  }
  return absl::OkStatus();
}

namespace {

// config.rope of an mha, gqa or mqa layer.
absl::Status CheckRope(const ModuleConfig& c) {
  const RopeConfig& r = c.rope;
  if (r.style == RopeStyle::kNone) return absl::OkStatus();
  if (!(r.theta >= 0.0) || !std::isfinite(r.theta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.rope.theta: expected a finite value >= 0 (0: 10000), got ", r.theta));
  }
  const int64_t d_head = HeadDimK(c);
  if (r.rotary_dim < 0 || r.rotary_dim > d_head || r.rotary_dim % 2 != 0 ||
      (r.rotary_dim == 0 && d_head % 2 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.rope.rotary_dim: expected an even number in 0..", d_head,
        " (the head width d_head; 0: all of it, which must be even), got ", r.rotary_dim));
  }
  return CheckRopeScaling(r.scaling, "config.rope.scaling");
}

}  // namespace

absl::Status ValidateConfig(const ModuleConfig& c) {
  ATTN_RETURN_IF_ERROR(CheckRange("config.d_model", c.d_model, 1));
  const bool projected =
      c.variant == Variant::kMha || c.variant == Variant::kGqa || c.variant == Variant::kMqa;
  if (c.rope.style != RopeStyle::kNone && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.rope: only mha, gqa and mqa layers take it, not ", VariantFieldName(c.variant),
        c.variant == Variant::kMla ? " (its own qk_rope_head_dim and rope_theta)" : ""));
  }
  if (c.qk_norm && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.qk_norm: only mha, gqa and mqa layers take it, not ", VariantFieldName(c.variant)));
  }
  if (c.output_bias.has_value() && !projected) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.output_bias: only mha, gqa and mqa layers "
                     "take it, not ",
                     VariantFieldName(c.variant)));
  }
  if (c.scale != 0.0 && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.scale: only mha, gqa and mqa layers take it, not ", VariantFieldName(c.variant)));
  }
  if (c.head_dim != 0 && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.head_dim: only mha, gqa and mqa layers take it, not ", VariantFieldName(c.variant),
        c.variant == Variant::kMla ? " (its own qk_nope_head_dim, qk_rope_head_dim, v_head_dim)"
                                   : " (its d_k and d_v)"));
  }
  if (c.head_dim < 0 || c.head_dim > kMaxConfigDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.head_dim: expected 0 (d_model / heads) or 1..", kMaxConfigDim, ", got ",
        c.head_dim));
  }
  if (c.sliding_window != 0 && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.sliding_window: only mha, gqa and mqa layers take it, not ",
        VariantFieldName(c.variant)));
  }
  if (c.sliding_window < 0 || c.sliding_window > kMaxConfigDim * 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.sliding_window: expected 0 (no window) or a number of keys >= 1, got ",
        c.sliding_window));
  }
  if (c.logit_softcap != 0.0 && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.logit_softcap: only mha, gqa and mqa layers take it, not ",
        VariantFieldName(c.variant)));
  }
  if (!(c.logit_softcap >= 0.0) || !std::isfinite(c.logit_softcap)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.logit_softcap: expected a finite value >= 0 (0: none), got ", c.logit_softcap));
  }
  if (c.mla_rope_scaling.type != RopeScalingType::kNone && c.variant != Variant::kMla) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.mla.rope_scaling: only mla layers take it, not ",
                     VariantFieldName(c.variant), " (config.rope.scaling)"));
  }
  if (c.mla_rope_interleave && c.variant != Variant::kMla) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.mla.rope_interleave: only mla layers take it, not ",
                     VariantFieldName(c.variant)));
  }
  if (c.attention_sinks && !projected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.attention_sinks: only mha, gqa and mqa layers take it, not ",
        VariantFieldName(c.variant)));
  }
  if (!(c.scale >= 0.0) || !std::isfinite(c.scale)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.scale: expected a finite value >= 0 (0: 1/sqrt(d_head)), got ", c.scale));
  }
  if (!(c.norm_eps >= 0.0) || !std::isfinite(c.norm_eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.norm_eps: expected a finite value >= 0 (0: 1e-6), got ", c.norm_eps));
  }
  ATTN_RETURN_IF_ERROR(CheckKvCacheDType(c.kv_cache_dtype, "config.kv_cache_dtype"));
  ATTN_RETURN_IF_ERROR(CheckComputeDType(c.compute_dtype, "config.compute_dtype"));
  switch (c.variant) {
    case Variant::kSelfAttention:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "d_k"), c.d_k, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "d_v"), c.d_v, 1));
      return absl::OkStatus();
    case Variant::kMha:
    case Variant::kMqa:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_heads"), c.num_heads, 1));
      if (c.head_dim == 0) {
        ATTN_RETURN_IF_ERROR(
            CheckDivides(Field(c, "num_heads"), c.num_heads, "d_model", c.d_model));
      }
      return CheckRope(c);
    case Variant::kGqa:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_q_heads"), c.num_heads, 1));
      if (c.head_dim == 0) {
        ATTN_RETURN_IF_ERROR(
            CheckDivides(Field(c, "num_q_heads"), c.num_heads, "d_model", c.d_model));
      }
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_kv_heads"), c.num_kv_heads, 1));
      ATTN_RETURN_IF_ERROR(
          CheckDivides(Field(c, "num_kv_heads"), c.num_kv_heads, "num_q_heads", c.num_heads));
      return CheckRope(c);
    case Variant::kMla:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_heads"), c.num_heads, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "q_lora_rank"), c.q_lora_rank, 0));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "kv_lora_rank"), c.kv_lora_rank, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "qk_nope_head_dim"), c.qk_nope_head_dim, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "qk_rope_head_dim"), c.qk_rope_head_dim, 2));
      if (c.qk_rope_head_dim % 2 != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(Field(c, "qk_rope_head_dim"),
                         ": expected an even number (rotate-half RoPE), got ", c.qk_rope_head_dim));
      }
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "v_head_dim"), c.v_head_dim, 1));
      if (!(c.rope_theta >= 0.0) || !std::isfinite(c.rope_theta)) {
        return absl::InvalidArgumentError(
            absl::StrCat(Field(c, "rope_theta"), ": expected a finite value >= 0 (0: 10000), got ",
                         c.rope_theta));
      }
      ATTN_RETURN_IF_ERROR(CheckRopeScaling(c.mla_rope_scaling, "config.mla.rope_scaling"));
      // Per-head products must stay far from int64 overflow.
      if (c.num_heads * (c.qk_nope_head_dim + c.v_head_dim) > kMaxConfigDim * 64) {
        return absl::InvalidArgumentError(absl::StrCat(
            Field(c, "num_heads"),
            ": num_heads·(qk_nope_head_dim + v_head_dim) must be <= ", kMaxConfigDim * 64));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("config: no variant set");
}

int64_t NumQueryHeads(const ModuleConfig& c) {
  return c.variant == Variant::kSelfAttention ? 1 : c.num_heads;
}

int64_t NumKvHeads(const ModuleConfig& c) {
  switch (c.variant) {
    case Variant::kSelfAttention:
    case Variant::kMqa:
      return 1;
    case Variant::kGqa:
      return c.num_kv_heads;
    default:
      return c.num_heads;
  }
}

int64_t HeadDimK(const ModuleConfig& c) {
  switch (c.variant) {
    case Variant::kSelfAttention:
      return c.d_k;
    case Variant::kMla:
      return c.qk_nope_head_dim + c.qk_rope_head_dim;
    default:
      return c.head_dim != 0 ? c.head_dim : c.d_model / c.num_heads;
  }
}

int64_t HeadDimV(const ModuleConfig& c) {
  switch (c.variant) {
    case Variant::kSelfAttention:
      return c.d_v;
    case Variant::kMla:
      return c.v_head_dim;
    default:
      return c.head_dim != 0 ? c.head_dim : c.d_model / c.num_heads;
  }
}

int64_t OutputDim(const ModuleConfig& c) {
  return c.variant == Variant::kSelfAttention ? c.d_v : c.d_model;
}

std::vector<WeightSpec> ExpectedWeights(const ModuleConfig& c) {
  std::vector<WeightSpec> specs;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    specs.push_back({name + ".weight", {out, in}});
    if (bias) specs.push_back({name + ".bias", {out}});
  };
  const int64_t d = c.d_model;
  switch (c.variant) {
    case Variant::kSelfAttention:
      linear("w_q", c.d_k, d, c.bias);
      linear("w_k", c.d_k, d, c.bias);
      linear("w_v", c.d_v, d, c.bias);
      break;
    case Variant::kMha:
    case Variant::kGqa:
    case Variant::kMqa: {
      const int64_t q = NumQueryHeads(c) * HeadDimK(c), kv = NumKvHeads(c) * HeadDimK(c);
      linear("W_q", q, d, c.bias);
      linear("W_k", kv, d, c.bias);
      linear("W_v", kv, d, c.bias);
      linear("W_o", d, q, HasOutputBias(c));
      if (c.qk_norm) {
        specs.push_back({"q_norm.weight", {HeadDimK(c)}});
        specs.push_back({"k_norm.weight", {HeadDimK(c)}});
      }
      if (c.attention_sinks) specs.push_back({"sinks", {NumQueryHeads(c)}});
      break;
    }
    case Variant::kMla: {
      const int64_t h = c.num_heads, dq = c.qk_nope_head_dim + c.qk_rope_head_dim;
      if (c.q_lora_rank == 0) {
        linear("q_proj", h * dq, d, false);
      } else {
        linear("q_a_proj", c.q_lora_rank, d, false);
        specs.push_back({"q_a_layernorm.weight", {c.q_lora_rank}});
        linear("q_b_proj", h * dq, c.q_lora_rank, false);
      }
      linear("kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, d, false);
      specs.push_back({"kv_a_layernorm.weight", {c.kv_lora_rank}});
      linear("kv_b_proj", h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank, false);
      linear("o_proj", d, h * c.v_head_dim, false);
      break;
    }
  }
  return specs;
}

int64_t ParameterCount(const ModuleConfig& c) {
  int64_t n = 0;
  for (const WeightSpec& s : ExpectedWeights(c)) n += NumElements(s.shape);
  return n;
}

int64_t ParameterBytes(const ModuleConfig& c) {
  int64_t bytes = 0;
  const int64_t matrix_size = c.compute_dtype == DType::kBfloat16 ? 2 : 4;
  for (const WeightSpec& s : ExpectedWeights(c)) {
    const int64_t n = NumElements(s.shape);
    const int64_t size = s.shape.size() == 2 ? matrix_size : 4;
    if (n > (INT64_MAX - bytes) / size) return INT64_MAX;
    bytes += n * size;
  }
  return bytes;
}

absl::Status CheckComputeDType(DType dtype, absl::string_view field) {
  if (dtype == DType::kFloat32 || dtype == DType::kBfloat16) return absl::OkStatus();
  if (dtype == DType::kFloat16) {
    return absl::FailedPreconditionError(
        absl::StrCat(field,
                     ": FLOAT16 compute needs avx512_fp16 and a float16 matmul, which oneDNN 2.6 "
                     "does not run on CPUs; use BFLOAT16 or FLOAT32"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected FLOAT32 or BFLOAT16, got ", DTypeName(dtype)));
}

absl::Status CheckKvCacheDType(DType dtype, absl::string_view field) {
  if (dtype == DType::kFloat32 || dtype == DType::kBfloat16 || dtype == DType::kFloat16 ||
      dtype == DType::kInt8) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected FLOAT32, BFLOAT16, FLOAT16 or INT8, got ", DTypeName(dtype)));
}

int64_t KvCacheBytesPerToken(const ModuleConfig& c, DType kv_dtype) {
  const int64_t size = DTypeSize(kv_dtype), scale = kv_dtype == DType::kInt8 ? 4 : 0;
  if (c.variant == Variant::kMla) return (c.kv_lora_rank + c.qk_rope_head_dim) * size + scale;
  return NumKvHeads(c) * ((HeadDimK(c) + HeadDimV(c)) * size + 2 * scale);
}

int64_t KvCacheBytesPerToken(const ModuleConfig& c) {
  return KvCacheBytesPerToken(c, c.kv_cache_dtype);
}

}  // namespace attention
