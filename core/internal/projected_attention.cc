#include "core/internal/projected_attention.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "core/cancellation.h"
#include "core/cost_model.h"
#include "core/dtype.h"
#include "core/internal/gemm.h"
#include "core/internal/layer_inputs.h"
#include "core/internal/layer_ops.h"
#include "core/kv_cache.h"
#include "core/paged_attention.h"
#include "core/sdpa.h"
#include "core/status_macros.h"

namespace attention::internal {
namespace {

// self_attention, mha, gqa, mqa: project, attend over heads, project out.
class ProjectedAttention final : public AttentionModule {
 public:
  ProjectedAttention(const ModuleConfig& c, WeightMap w) : AttentionModule(c, std::move(w)) {
    hq_ = NumQueryHeads(c);
    hkv_ = NumKvHeads(c);
    dqk_ = HeadDimK(c);
    dv_ = HeadDimV(c);
    if (c.variant == Variant::kSelfAttention) {
      q_ = "w_q";
      k_ = "w_k";
      v_ = "w_v";
    } else {
      q_ = "W_q";
      k_ = "W_k";
      v_ = "W_v";
      o_ = "W_o";
    }
  }

  absl::StatusOr<ForwardResult> Forward(const ForwardInput& input) const override {
    const ModuleConfig& c = config();
    ATTN_ASSIGN_OR_RETURN(LayerInputs in, ResolveInputs(input, c.d_model, false));
    const View4 shape_q = View4::Dense(nullptr, in.batch, hq_, in.lq, dqk_);
    const View4 shape_k = View4::Dense(nullptr, in.batch, hkv_, in.lk, dqk_);
    const View4 shape_v = View4::Dense(nullptr, in.batch, hkv_, in.lk, dv_);
    ATTN_RETURN_IF_ERROR(ValidateSdpa(shape_q, shape_k, shape_v, input.mask));

    if (input.position_offset < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("position_offset: expected >= 0, got ", input.position_offset));
    }
    if (c.rope.style != RopeStyle::kNone && input.key.present) {
      return absl::InvalidArgumentError(
          "key: a layer with rotary embeddings (config.rope) attends to its own tokens; "
          "send no key or value");
    }
    const int64_t mq = in.batch * in.lq, mk = in.batch * in.lk, d = c.d_model;
    Tensor q({mq, hq_ * dqk_}), k({mk, hkv_ * dqk_}), v({mk, hkv_ * dv_});
    const CancellationCheck* cancel = CurrentCancellation();
    ATTN_RETURN_IF_ERROR(Project(*in.query, q_, hq_ * dqk_, q));
    ATTN_RETURN_IF_ERROR(Project(*in.key, k_, hkv_ * dqk_, k));
    ATTN_RETURN_IF_ERROR(Project(*in.value, v_, hkv_ * dv_, v));
    NormalizeHeads(q, "q_norm.weight");
    NormalizeHeads(k, "k_norm.weight");
    Rotate(q, in.batch, in.lq, hq_, input.position_offset);
    Rotate(k, in.batch, in.lk, hkv_, input.position_offset);
    ATTN_RETURN_IF_ERROR(PollCancellation(cancel));

    // [B, L, H, D] buffers read as [B, H, L, D] through strides.
    ForwardResult result;
    // Without an output projection (self_attention) attention writes the
    // layer's output itself.
    Tensor attn_owned;
    float* attn =
        Destination(o_.empty() ? input.output : nullptr, o_.empty() ? result.output : attn_owned,
                    {in.batch, in.lq, hq_ * dv_});
    float* weights = input.return_weights
                         ? Destination(input.weights, result.weights, {in.batch, hq_, in.lq, in.lk})
                         : nullptr;
    ATTN_RETURN_IF_ERROR(Sdpa(HeadsView(q.data(), in.batch, hq_, in.lq, dqk_),
                              HeadsView(k.data(), in.batch, hkv_, in.lk, dqk_),
                              HeadsView(v.data(), in.batch, hkv_, in.lk, dv_), WindowedMask(input.mask),
                              Scale(), MutHeadsView(attn, in.batch, hq_, in.lq, dv_), weights,
                              attention_dtype(), Terms()));
    result.flops = LayerFlops(c, in.batch, in.lq, in.lk, in.lk, input.mask.causal, MlaForm::kNaive);
    if (o_.empty()) return result;
    ATTN_RETURN_IF_ERROR(PollCancellation(cancel));
    float* y = Destination(input.output, result.output, {in.batch, in.lq, d});
    ATTN_RETURN_IF_ERROR(
        Linear(attn, mq, hq_ * dv_, hq_ * dv_, Matrix(o_ + ".weight"), d, OutputBias(), y, d));
    return result;
  }

 private:
  const float* Bias(const std::string& prefix) const {
    return config().bias ? W(prefix + ".bias").data() : nullptr;
  }
  const float* OutputBias() const {
    return HasOutputBias(config()) ? W(o_ + ".bias").data() : nullptr;
  }
  // The request's mask with the layer's sliding window (the narrower of the
  // two when both have one).
  MaskSpec WindowedMask(const MaskSpec& mask) const {
    const int64_t w = config().sliding_window;
    if (w == 0 || (mask.sliding_window != 0 && mask.sliding_window <= w)) return mask;
    MaskSpec windowed = mask;
    windowed.sliding_window = w;
    return windowed;
  }
  // The layer's soft-cap and sinks.
  SdpaTerms Terms() const {
    SdpaTerms terms;
    terms.logit_softcap = static_cast<float>(config().logit_softcap);
    if (config().attention_sinks) terms.sinks = W("sinks").data();
    return terms;
  }

  // The scores' scale: config.scale, or 1/sqrt(d_head).
  float Scale() const {
    const double s = config().scale;
    return s != 0.0 ? static_cast<float>(s) : 1.0f / std::sqrt(static_cast<float>(dqk_));
  }

  // QK-norm (config.qk_norm): RMSNorm over each head's dqk values of
  // projected rows [.., heads·dqk], before RoPE; rounded in bf16 compute.
  void NormalizeHeads(Tensor& x, const std::string& weight) const {
    if (!config().qk_norm) return;
    const double eps = config().norm_eps == 0.0 ? kRmsNormEps : config().norm_eps;
    RmsNormRows(x.data(), x.size() / dqk_, dqk_, dqk_, W(weight).data(), eps);
    if (bf16_compute()) RoundToBfloat16(x.data(), x.size());
  }

  // Rotary embeddings (config.rope) in place on projected rows [B·len,
  // heads·dqk] at positions pos0 + t; rounded to bf16 again in bf16 compute.
  void Rotate(Tensor& x, int64_t batch, int64_t len, int64_t heads, int64_t pos0) const {
    const RopeConfig& r = config().rope;
    if (r.style == RopeStyle::kNone) return;
    ApplyRope(x.data(), batch, len, heads, dqk_, heads * dqk_,
              ComputeRopeFrequencies(r.theta == 0.0 ? 10000.0 : r.theta,
                                     r.rotary_dim == 0 ? dqk_ : r.rotary_dim, r.scaling),
              pos0, r.style == RopeStyle::kGptj);
    if (bf16_compute()) RoundToBfloat16(x.data(), x.size());
  }

  // y = x · Wᵀ + b. With bf16 compute y is rounded to bf16 too: it is the
  // operand of the attention's products (and what Decode caches).
  absl::Status Project(const ConstTensorRef& x, const std::string& prefix, int64_t n,
                       Tensor& y) const {
    const int64_t m = x.dim(0) * x.dim(1), k = x.dim(2);
    ATTN_RETURN_IF_ERROR(
        Linear(x.data, m, k, k, Matrix(prefix + ".weight"), n, Bias(prefix), y.data(), n));
    if (bf16_compute()) RoundToBfloat16(y.data(), y.size());
    return absl::OkStatus();
  }

  absl::StatusOr<Tensor> DecodeStep(PagedKvCache& cache, const Tensor& x) const override {
    const int64_t batch = x.dim(0), t_new = x.dim(1), m = batch * t_new;
    const int64_t l0 = cache.length();
    ATTN_RETURN_IF_ERROR(cache.Reserve(t_new));
    Tensor q({m, hq_ * dqk_}), k({m, hkv_ * dqk_}), v({m, hkv_ * dv_});
    ATTN_RETURN_IF_ERROR(Project(&x, q_, hq_ * dqk_, q));
    ATTN_RETURN_IF_ERROR(Project(&x, k_, hkv_ * dqk_, k));
    ATTN_RETURN_IF_ERROR(Project(&x, v_, hkv_ * dv_, v));
    NormalizeHeads(q, "q_norm.weight");
    NormalizeHeads(k, "k_norm.weight");
    Rotate(q, batch, t_new, hq_, l0);
    Rotate(k, batch, t_new, hkv_, l0);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < t_new; ++t) {
        for (int64_t h = 0; h < hkv_; ++h) {
          cache.StoreK(b, h, l0 + t, k.data() + ((b * t_new + t) * hkv_ + h) * dqk_);
          cache.StoreV(b, h, l0 + t, v.data() + ((b * t_new + t) * hkv_ + h) * dv_);
        }
      }
    }
    cache.Advance(t_new);
    Tensor attn({batch, t_new, hq_ * dv_});
    ATTN_RETURN_IF_ERROR(PagedSdpa(HeadsView(q.data(), batch, hq_, t_new, dqk_), cache, Scale(),
                                   MutHeadsView(attn.data(), batch, hq_, t_new, dv_),
                                   attention_dtype(), config().sliding_window, Terms()));
    // The next chunk's first token (position length()) sees from
    // length() - W + 1 on: the older tokens' blocks can go (kv_cache.h).
    if (const int64_t w = config().sliding_window; w > 0) cache.DropBefore(cache.length() - w + 1);
    if (o_.empty()) return attn;
    const int64_t d = config().d_model;
    Tensor y({batch, t_new, d});
    ATTN_RETURN_IF_ERROR(Linear(attn.data(), m, hq_ * dv_, hq_ * dv_, Matrix(o_ + ".weight"), d,
                                OutputBias(), y.data(), d));
    return y;
  }

  static View4 HeadsView(const float* data, int64_t b, int64_t h, int64_t l, int64_t d) {
    View4 v;
    v.data = data;
    v.dims[0] = b, v.dims[1] = h, v.dims[2] = l, v.dims[3] = d;
    v.strides[0] = l * h * d, v.strides[1] = d, v.strides[2] = h * d;
    return v;
  }
  static MutView4 MutHeadsView(float* data, int64_t b, int64_t h, int64_t l, int64_t d) {
    const View4 v = HeadsView(data, b, h, l, d);
    MutView4 m;
    m.data = data;
    std::memcpy(m.dims, v.dims, sizeof(m.dims));
    std::memcpy(m.strides, v.strides, sizeof(m.strides));
    return m;
  }

  int64_t hq_, hkv_, dqk_, dv_;
  std::string q_, k_, v_, o_;
};

}  // namespace

std::unique_ptr<AttentionModule> MakeProjectedAttention(const ModuleConfig& config,
                                                        WeightMap weights) {
  return std::make_unique<ProjectedAttention>(config, std::move(weights));
}

}  // namespace attention::internal
