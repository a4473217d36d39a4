#include "wire/convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace attention::wire {
namespace {

absl::Status Invalid(absl::string_view field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool IsFloatDType(pb::DType d) {
  return d == pb::DTYPE_FLOAT32 || d == pb::DTYPE_FLOAT16 || d == pb::DTYPE_BFLOAT16;
}

// Validates shape dims (each >= min_dim) and data length for `dtype`;
// returns the element count.
absl::StatusOr<int64_t> CheckShapeAndData(const pb::Tensor& t, absl::string_view field,
                                          int64_t max_elements) {
  for (int i = 0; i < t.shape_size(); ++i) {
    if (t.shape(i) < 1) {
      return Invalid(field, absl::StrCat("shape[", i, "] expected >= 1, got ", t.shape(i)));
    }
  }
  ATTN_RETURN_IF_ERROR(CheckElementLimit(field, t.shape(), max_elements));
  const int64_t n = NumElements(t.shape());
  const int64_t want = NumBytes(t.shape(), DTypeSize(ToCoreDType(t.dtype())));
  if (want < 0) {
    return Invalid(field,
                   absl::StrCat("shape ", ShapeString(t.shape()), " of ", pb::DType_Name(t.dtype()),
                                " has more bytes than int64 holds"));
  }
  if (static_cast<int64_t>(t.data().size()) != want) {
    return Invalid(field, absl::StrCat("data expected ", want, " bytes (", n, " ",
                                       pb::DType_Name(t.dtype()), " elements of shape ",
                                       ShapeString(t.shape()), "), got ", t.data().size()));
  }
  return n;
}

}  // namespace

pb::DType ToProtoDType(DType d) {
  switch (d) {
    case DType::kFloat16:
      return pb::DTYPE_FLOAT16;
    case DType::kBfloat16:
      return pb::DTYPE_BFLOAT16;
    case DType::kBool:
      return pb::DTYPE_BOOL;
    case DType::kInt8:
      return pb::DTYPE_INT8;
    case DType::kFloat32:
      return pb::DTYPE_FLOAT32;
  }
  return pb::DTYPE_FLOAT32;
}

absl::StatusOr<DType> ParseDType(absl::string_view name, absl::string_view field) {
  if (name == "f32" || name == "float32") return DType::kFloat32;
  if (name == "f16" || name == "float16") return DType::kFloat16;
  if (name == "bf16" || name == "bfloat16") return DType::kBfloat16;
  return Invalid(field, absl::StrCat("expected f32, f16 or bf16, got '", name, "'"));
}

DType ToCoreDType(pb::DType d) {
  switch (d) {
    case pb::DTYPE_FLOAT16:
      return DType::kFloat16;
    case pb::DTYPE_BFLOAT16:
      return DType::kBfloat16;
    case pb::DTYPE_BOOL:
      return DType::kBool;
    case pb::DTYPE_INT8:
      return DType::kInt8;
    default:
      return DType::kFloat32;
  }
}

absl::Status CheckElementLimit(absl::string_view field, absl::Span<const int64_t> shape,
                               int64_t max_elements) {
  const int64_t n = NumElements(shape);
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": shape ", ShapeString(shape), " has more elements than int64 holds"));
  }
  if (max_elements > 0 && n > max_elements) {
    return absl::ResourceExhaustedError(absl::StrCat(field, ": shape ", ShapeString(shape), " has ",
                                                     n, " elements, over the server limit of ",
                                                     max_elements, " (--max_tensor_elements)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t, absl::string_view field,
                                       const TensorSpec& spec, int64_t max_elements) {
  if (!IsFloatDType(t.dtype())) {
    return Invalid(field, absl::StrCat("dtype expected DTYPE_FLOAT32, DTYPE_FLOAT16 or "
                                       "DTYPE_BFLOAT16, got ",
                                       pb::DType_IsValid(t.dtype()) ? pb::DType_Name(t.dtype())
                                                                    : absl::StrCat(t.dtype())));
  }
  if (spec.rank >= 0 && t.shape_size() != spec.rank) {
    return Invalid(field, absl::StrCat("shape expected rank ", spec.rank, " ", spec.dims, ", got ",
                                       ShapeString(t.shape())));
  }
  if (spec.rank < 0 && t.shape_size() == 0) {
    return Invalid(field, "shape expected rank >= 1, got []");
  }
  ATTN_ASSIGN_OR_RETURN(const int64_t n, CheckShapeAndData(t, field, max_elements));
  Tensor out(std::vector<int64_t>(t.shape().begin(), t.shape().end()));
  DecodeToFloat(ToCoreDType(t.dtype()), t.data().data(), n, out.data());
  return out;
}

absl::StatusOr<ConstTensorRef> RefFromProto(const pb::Tensor& t, absl::string_view field,
                                            const TensorSpec& spec, int64_t max_elements,
                                            Tensor* storage) {
  const auto* data = reinterpret_cast<const float*>(t.data().data());
  if (t.dtype() == pb::DTYPE_FLOAT32 && reinterpret_cast<uintptr_t>(data) % alignof(float) == 0) {
    if (spec.rank >= 0 && t.shape_size() != spec.rank) {
      return Invalid(field, absl::StrCat("shape expected rank ", spec.rank, " ", spec.dims,
                                         ", got ", ShapeString(t.shape())));
    }
    if (spec.rank < 0 && t.shape_size() == 0) {
      return Invalid(field, "shape expected rank >= 1, got []");
    }
    ATTN_RETURN_IF_ERROR(CheckShapeAndData(t, field, max_elements).status());
    return ConstTensorRef(data, std::vector<int64_t>(t.shape().begin(), t.shape().end()));
  }
  ATTN_ASSIGN_OR_RETURN(*storage, TensorFromProto(t, field, spec, max_elements));
  return ConstTensorRef(storage);
}

absl::StatusOr<View4> ViewFromProto(const pb::Tensor& t, absl::string_view field,
                                    const TensorSpec& spec, int64_t max_elements, Tensor* storage) {
  if (spec.rank != 4) return absl::InternalError("ViewFromProto: rank-4 spec expected");
  ATTN_ASSIGN_OR_RETURN(ConstTensorRef ref, RefFromProto(t, field, spec, max_elements, storage));
  return View4::Dense(ref.data, ref.dim(0), ref.dim(1), ref.dim(2), ref.dim(3));
}

void TensorToProto(const Tensor& t, pb::DType dtype, pb::Tensor* out) {
  out->set_dtype(dtype);
  out->mutable_shape()->Assign(t.shape().begin(), t.shape().end());
  const DType d = ToCoreDType(dtype);
  std::string* data = out->mutable_data();
  data->resize(static_cast<size_t>(t.size()) * DTypeSize(d));
  EncodeFromFloat(d, t.data(), t.size(), data->data());
}

absl::StatusOr<pb::DType> ResolveOutputDType(pb::DType requested, pb::DType input,
                                             absl::string_view field) {
  if (requested == pb::DTYPE_UNSPECIFIED) return input;
  if (!IsFloatDType(requested)) {
    return Invalid(field, absl::StrCat("expected DTYPE_UNSPECIFIED, DTYPE_FLOAT32, DTYPE_FLOAT16 "
                                       "or DTYPE_BFLOAT16, got ",
                                       pb::DType_IsValid(requested) ? pb::DType_Name(requested)
                                                                    : absl::StrCat(requested)));
  }
  return requested;
}

absl::StatusOr<MaskSpec> MaskFromProto(const pb::Mask& m, absl::string_view field,
                                       int64_t max_elements) {
  MaskSpec mask;
  mask.causal = m.causal();
  mask.key_lengths.assign(m.key_lengths().begin(), m.key_lengths().end());
  mask.sliding_window = m.sliding_window();
  if (!m.has_keep()) return mask;
  const pb::Tensor& keep = m.keep();
  const std::string keep_field = absl::StrCat(field, ".keep");
  if (!IsFloatDType(keep.dtype()) && keep.dtype() != pb::DTYPE_BOOL) {
    return Invalid(keep_field,
                   absl::StrCat("dtype expected one of DTYPE_BOOL, DTYPE_FLOAT32, "
                                "DTYPE_FLOAT16, DTYPE_BFLOAT16, got ",
                                pb::DType_IsValid(keep.dtype()) ? pb::DType_Name(keep.dtype())
                                                                : absl::StrCat(keep.dtype())));
  }
  if (keep.shape_size() > 4) {
    return Invalid(keep_field, absl::StrCat("shape expected rank <= 4 (broadcastable to [B, Hq, "
                                            "Lq, Lk]), got ",
                                            ShapeString(keep.shape())));
  }
  ATTN_ASSIGN_OR_RETURN(const int64_t n, CheckShapeAndData(keep, keep_field, max_elements));
  mask.keep_shape.assign(keep.shape().begin(), keep.shape().end());
  mask.keep.resize(n);
  if (keep.dtype() == pb::DTYPE_BOOL) {
    const auto* p = reinterpret_cast<const unsigned char*>(keep.data().data());
    for (int64_t i = 0; i < n; ++i) mask.keep[i] = p[i] != 0;
  } else {
    std::vector<float> values(n);
    DecodeToFloat(ToCoreDType(keep.dtype()), keep.data().data(), n, values.data());
    for (int64_t i = 0; i < n; ++i) mask.keep[i] = values[i] != 0.0f;
  }
  if (n == 0) mask.keep_shape.clear();
  return mask;
}

absl::StatusOr<DType> KvCacheDTypeFromProto(pb::DType d, absl::string_view field) {
  switch (d) {
    case pb::DTYPE_UNSPECIFIED:
    case pb::DTYPE_FLOAT32:
      return DType::kFloat32;
    case pb::DTYPE_BFLOAT16:
      return DType::kBfloat16;
    case pb::DTYPE_FLOAT16:
      return DType::kFloat16;
    case pb::DTYPE_INT8:
      return DType::kInt8;
    default:
      return Invalid(field,
                     absl::StrCat("expected DTYPE_FLOAT32, DTYPE_BFLOAT16, DTYPE_FLOAT16 or "
                                  "DTYPE_INT8, got ",
                                  pb::DType_IsValid(d) ? pb::DType_Name(d) : absl::StrCat(d)));
  }
}

absl::StatusOr<DType> ComputeDTypeFromProto(pb::DType d, absl::string_view field) {
  if (!pb::DType_IsValid(d)) {
    return Invalid(field, absl::StrCat("expected DTYPE_FLOAT32 or DTYPE_BFLOAT16, got ", d));
  }
  const DType dtype = ToCoreDType(d);  // UNSPECIFIED: FLOAT32
  ATTN_RETURN_IF_ERROR(CheckComputeDType(dtype, field));
  return dtype;
}

namespace {

absl::StatusOr<RopeScaling> RopeScalingFromProto(const pb::RopeScaling& p,
                                                 absl::string_view field) {
  RopeScaling s;
  switch (p.type()) {
    case pb::ROPE_SCALING_NONE:
      s.type = RopeScalingType::kNone;
      break;
    case pb::ROPE_SCALING_LINEAR:
      s.type = RopeScalingType::kLinear;
      break;
    case pb::ROPE_SCALING_LLAMA3:
      s.type = RopeScalingType::kLlama3;
      break;
    case pb::ROPE_SCALING_YARN:
      s.type = RopeScalingType::kYarn;
      break;
    default:
      return Invalid(absl::StrCat(field, ".type"),
                     absl::StrCat("expected ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, "
                                  "ROPE_SCALING_LLAMA3 or ROPE_SCALING_YARN, got ",
                                  static_cast<int>(p.type())));
  }
  s.factor = p.factor();
  s.original_max_position = p.original_max_position();
  s.low_freq_factor = p.low_freq_factor();
  s.high_freq_factor = p.high_freq_factor();
  s.beta_fast = p.beta_fast();
  s.beta_slow = p.beta_slow();
  s.attention_factor = p.attention_factor();
  s.mscale = p.mscale();
  s.mscale_all_dim = p.mscale_all_dim();
  s.truncate = p.has_truncate() ? p.truncate() : true;
  return s;
}

void RopeScalingToProto(const RopeScaling& s, pb::RopeScaling* p) {
  static constexpr pb::RopeScalingType kTypes[] = {pb::ROPE_SCALING_NONE, pb::ROPE_SCALING_LINEAR,
                                                   pb::ROPE_SCALING_LLAMA3, pb::ROPE_SCALING_YARN};
  p->set_type(kTypes[static_cast<int>(s.type)]);
  p->set_factor(s.factor);
  p->set_original_max_position(s.original_max_position);
  p->set_low_freq_factor(s.low_freq_factor);
  p->set_high_freq_factor(s.high_freq_factor);
  p->set_beta_fast(s.beta_fast);
  p->set_beta_slow(s.beta_slow);
  p->set_attention_factor(s.attention_factor);
  p->set_mscale(s.mscale);
  p->set_mscale_all_dim(s.mscale_all_dim);
  if (!s.truncate) p->set_truncate(false);
}

}  // namespace

absl::StatusOr<ModuleConfig> ConfigFromProto(const pb::ModuleConfig& c) {
  ModuleConfig config;
  config.d_model = c.d_model();
  config.bias = c.has_bias() ? c.bias() : true;
  ATTN_ASSIGN_OR_RETURN(config.kv_cache_dtype,
                        KvCacheDTypeFromProto(c.kv_cache_dtype(), "config.kv_cache_dtype"));
  ATTN_ASSIGN_OR_RETURN(config.compute_dtype,
                        ComputeDTypeFromProto(c.compute_dtype(), "config.compute_dtype"));
  if (c.has_rope()) {
    switch (c.rope().style()) {
      case pb::ROPE_NONE:
        config.rope.style = RopeStyle::kNone;
        break;
      case pb::ROPE_NEOX:
        config.rope.style = RopeStyle::kNeox;
        break;
      case pb::ROPE_GPTJ:
        config.rope.style = RopeStyle::kGptj;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("config.rope.style: expected ROPE_NONE, ROPE_NEOX or ROPE_GPTJ, got ",
                         static_cast<int>(c.rope().style())));
    }
    config.rope.theta = c.rope().theta();
    config.rope.rotary_dim = c.rope().rotary_dim();
    if (c.rope().has_scaling()) {
      ATTN_ASSIGN_OR_RETURN(config.rope.scaling,
                            RopeScalingFromProto(c.rope().scaling(), "config.rope.scaling"));
    }
  }
  config.qk_norm = c.qk_norm();
  config.norm_eps = c.norm_eps();
  config.scale = c.scale();
  if (c.has_output_bias()) config.output_bias = c.output_bias();
  config.head_dim = c.head_dim();
  config.sliding_window = c.sliding_window();
  config.logit_softcap = c.logit_softcap();
  config.attention_sinks = c.attention_sinks();
  switch (c.variant_case()) {
    case pb::ModuleConfig::kSelfAttention:
      config.variant = Variant::kSelfAttention;
      config.d_k = c.self_attention().d_k();
      config.d_v = c.self_attention().d_v();
      break;
    case pb::ModuleConfig::kMha:
      config.variant = Variant::kMha;
      config.num_heads = c.mha().num_heads();
      break;
    case pb::ModuleConfig::kGqa:
      config.variant = Variant::kGqa;
      config.num_heads = c.gqa().num_q_heads();
      config.num_kv_heads = c.gqa().num_kv_heads();
      break;
    case pb::ModuleConfig::kMqa:
      config.variant = Variant::kMqa;
      config.num_heads = c.mqa().num_heads();
      break;
    case pb::ModuleConfig::kMla: {
      const pb::LatentConfig& m = c.mla();
      config.variant = Variant::kMla;
      config.num_heads = m.num_heads();
      config.q_lora_rank = m.q_lora_rank();
      config.kv_lora_rank = m.kv_lora_rank();
      config.qk_nope_head_dim = m.qk_nope_head_dim();
      config.qk_rope_head_dim = m.qk_rope_head_dim();
      config.v_head_dim = m.v_head_dim();
      config.rope_theta = m.rope_theta();
      config.mla_rope_interleave = m.rope_interleave();
      if (m.has_rope_scaling()) {
        ATTN_ASSIGN_OR_RETURN(config.mla_rope_scaling,
                              RopeScalingFromProto(m.rope_scaling(), "config.mla.rope_scaling"));
      }
      break;
    }
    default:
      return absl::InvalidArgumentError(
          "config.variant: expected one of self_attention, mha, gqa, mqa, mla, got none");
  }
  ATTN_RETURN_IF_ERROR(ValidateConfig(config));
  return config;
}

void ConfigToProto(const ModuleConfig& c, pb::ModuleConfig* out) {
  out->Clear();
  out->set_d_model(c.d_model);
  if (c.variant != Variant::kMla) out->set_bias(c.bias);
  if (c.kv_cache_dtype != DType::kFloat32) out->set_kv_cache_dtype(ToProtoDType(c.kv_cache_dtype));
  if (c.compute_dtype != DType::kFloat32) out->set_compute_dtype(ToProtoDType(c.compute_dtype));
  if (c.qk_norm) out->set_qk_norm(true);
  if (c.norm_eps != 0.0) out->set_norm_eps(static_cast<float>(c.norm_eps));
  if (c.scale != 0.0) out->set_scale(static_cast<float>(c.scale));
  if (c.output_bias.has_value()) out->set_output_bias(*c.output_bias);
  if (c.head_dim != 0) out->set_head_dim(c.head_dim);
  if (c.sliding_window != 0) out->set_sliding_window(c.sliding_window);
  if (c.logit_softcap != 0.0) out->set_logit_softcap(static_cast<float>(c.logit_softcap));
  if (c.attention_sinks) out->set_attention_sinks(true);
  if (c.rope.style != RopeStyle::kNone) {
    pb::RotaryConfig* r = out->mutable_rope();
    r->set_style(c.rope.style == RopeStyle::kNeox ? pb::ROPE_NEOX : pb::ROPE_GPTJ);
    r->set_theta(c.rope.theta);
    r->set_rotary_dim(c.rope.rotary_dim);
    if (c.rope.scaling.type != RopeScalingType::kNone) {
      RopeScalingToProto(c.rope.scaling, r->mutable_scaling());
    }
  }
  switch (c.variant) {
    case Variant::kSelfAttention:
      out->mutable_self_attention()->set_d_k(c.d_k);
      out->mutable_self_attention()->set_d_v(c.d_v);
      break;
    case Variant::kMha:
      out->mutable_mha()->set_num_heads(c.num_heads);
      break;
    case Variant::kGqa:
      out->mutable_gqa()->set_num_q_heads(c.num_heads);
      out->mutable_gqa()->set_num_kv_heads(c.num_kv_heads);
      break;
    case Variant::kMqa:
      out->mutable_mqa()->set_num_heads(c.num_heads);
      break;
    case Variant::kMla: {
      pb::LatentConfig* m = out->mutable_mla();
      m->set_num_heads(c.num_heads);
      m->set_q_lora_rank(c.q_lora_rank);
      m->set_kv_lora_rank(c.kv_lora_rank);
      m->set_qk_nope_head_dim(c.qk_nope_head_dim);
      m->set_qk_rope_head_dim(c.qk_rope_head_dim);
      m->set_v_head_dim(c.v_head_dim);
      m->set_rope_theta(c.rope_theta);
      if (c.mla_rope_interleave) m->set_rope_interleave(true);
      if (c.mla_rope_scaling.type != RopeScalingType::kNone) {
        RopeScalingToProto(c.mla_rope_scaling, m->mutable_rope_scaling());
      }
      break;
    }
  }
}

}  // namespace attention::wire
