#include "core/internal/latent_attention.h"

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

// mla: DeepSeek-V2 multi-head latent attention, naive and absorbed forms.
class LatentAttention final : public AttentionModule {
 public:
  LatentAttention(const ModuleConfig& c, WeightMap w) : AttentionModule(c, std::move(w)) {}

  absl::StatusOr<ForwardResult> Forward(const ForwardInput& input) const override {
    const ModuleConfig& c = config();
    ATTN_ASSIGN_OR_RETURN(LayerInputs in, ResolveInputs(input, c.d_model, true));
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, d = c.d_model;
    const int64_t dq = dn + dr;
    const View4 shape_q = View4::Dense(nullptr, in.batch, h, in.lq, dq);
    const View4 shape_k = View4::Dense(nullptr, in.batch, 1, in.lk, dq);
    const View4 shape_v = View4::Dense(nullptr, in.batch, 1, in.lk, dv);
    ATTN_RETURN_IF_ERROR(ValidateSdpa(shape_q, shape_k, shape_v, input.mask));
    const int64_t mq = in.batch * in.lq, mk = in.batch * in.lk;
    ForwardResult result;

    // Queries: [B·Lq, H, dn + dr], RoPE on each head's last dr.
    Tensor q({mq, h * dq});
    ATTN_RETURN_IF_ERROR(ProjectQuery(*in.query, q));
    ApplyRope(q.data() + dn, in.batch, in.lq, h, dq, h * dq, Frequencies(), 0);
    Round(q);

    // Latent: [B·Lk, r + dr] = [RMSNorm(c_KV) | RoPE(k_rope)].
    Tensor latent({mk, r + dr});
    ATTN_RETURN_IF_ERROR(Linear(in.key->data, mk, d, d, Matrix("kv_a_proj_with_mqa.weight"), r + dr,
                                nullptr, latent.data(), r + dr));
    RmsNormRows(latent.data(), mk, r, r + dr, W("kv_a_layernorm.weight").data());
    ApplyRope(latent.data() + r, in.batch, in.lk, 1, 0, r + dr, Frequencies(), 0);
    Round(latent);

    ATTN_RETURN_IF_ERROR(PollCancellation(CurrentCancellation()));
    float* weights = input.return_weights
                         ? Destination(input.weights, result.weights, {in.batch, h, in.lq, in.lk})
                         : nullptr;
    Tensor attn({mq, h * dv});
    if (input.mla_form == MlaForm::kAbsorbed) {
      ATTN_RETURN_IF_ERROR(AttendAbsorbed(q, latent, in, input.mask, weights, attn));
    } else {
      ATTN_RETURN_IF_ERROR(AttendNaive(q, latent, in, input.mask, weights, attn));
    }
    float* y = Destination(input.output, result.output, {in.batch, in.lq, d});
    ATTN_RETURN_IF_ERROR(
        Linear(attn.data(), mq, h * dv, h * dv, Matrix("o_proj.weight"), d, nullptr, y, d));
    result.flops = LayerFlops(c, in.batch, in.lq, in.lk, in.lk, input.mask.causal, input.mla_form);
    return result;
  }

 private:
  // bf16 compute: the attention's operands (queries, latents, keys and
  // values) rounded to bf16, as a bf16 matmul's outputs would be stored.
  void Round(Tensor& t) const {
    if (bf16_compute()) RoundToBfloat16(t.data(), t.size());
  }

  // kv_b_proj [H·(dn+dv), r]: (W_UK_h; W_UV_h) per head, as a Mat over its
  // rows from `row` on, row-major or transposed, in its held dtype.
  Mat KvB(int64_t row, int64_t rows, int64_t cols, bool transposed) const {
    const int64_t r = config().kv_lora_rank;
    const WeightRef w = Matrix("kv_b_proj.weight");
    if (w.bf16 != nullptr) {
      const uint16_t* p = w.bf16 + row * r;
      return transposed ? Mat::Transposed(p, rows, cols, r) : Mat::RowMajor(p, rows, cols, r);
    }
    const float* p = w.f32 + row * r;
    return transposed ? Mat::Transposed(p, rows, cols, r) : Mat::RowMajor(p, rows, cols, r);
  }

  // RoPE of q_rope and k_rope: rope_theta (0: 10000) and mla_rope_scaling.
  RopeFrequencies Frequencies() const {
    return ComputeRopeFrequencies(config().rope_theta == 0 ? 10000.0 : config().rope_theta,
                                  config().qk_rope_head_dim, config().mla_rope_scaling);
  }

  absl::Status ProjectQuery(const ConstTensorRef& x, Tensor& q) const {
    const ModuleConfig& c = config();
    const int64_t m = x.dim(0) * x.dim(1), d = c.d_model, n = q.dim(1);
    if (c.q_lora_rank == 0) {
      return Linear(x.data, m, d, d, Matrix("q_proj.weight"), n, nullptr, q.data(), n);
    }
    const int64_t qr = c.q_lora_rank;
    Tensor cq({m, qr});
    ATTN_RETURN_IF_ERROR(
        Linear(x.data, m, d, d, Matrix("q_a_proj.weight"), qr, nullptr, cq.data(), qr));
    RmsNormRows(cq.data(), m, qr, qr, W("q_a_layernorm.weight").data());
    return Linear(cq.data(), m, qr, qr, Matrix("q_b_proj.weight"), n, nullptr, q.data(), n);
  }

  // Per-head K = [k_nope_h | k_rope] and V from kv_b_proj(c_KV).
  absl::Status AttendNaive(const Tensor& q, const Tensor& latent, const LayerInputs& in,
                           const MaskSpec& mask, float* weights, Tensor& attn) const {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, dq = dn + dr;
    const int64_t mk = in.batch * in.lk;
    Tensor kv({mk, h * (dn + dv)});
    ATTN_RETURN_IF_ERROR(Linear(latent.data(), mk, r, r + dr, Matrix("kv_b_proj.weight"),
                                h * (dn + dv), nullptr, kv.data(), h * (dn + dv)));
    Round(kv);
    Tensor k({mk, h * dq});
    for (int64_t t = 0; t < mk; ++t) {
      for (int64_t hh = 0; hh < h; ++hh) {
        float* dst = k.data() + (t * h + hh) * dq;
        std::memcpy(dst, kv.data() + (t * h + hh) * (dn + dv), dn * sizeof(float));
        std::memcpy(dst + dn, latent.data() + t * (r + dr) + r, dr * sizeof(float));
      }
    }
    const View4 qv = Strided(q.data(), in.batch, h, in.lq, dq, in.lq * h * dq, dq, h * dq);
    const View4 kv4 = Strided(k.data(), in.batch, h, in.lk, dq, in.lk * h * dq, dq, h * dq);
    const View4 vv = Strided(kv.data() + dn, in.batch, h, in.lk, dv, in.lk * h * (dn + dv), dn + dv,
                             h * (dn + dv));
    MutView4 ov;
    ov.data = attn.data();
    ov.dims[0] = in.batch, ov.dims[1] = h, ov.dims[2] = in.lq, ov.dims[3] = dv;
    ov.strides[0] = in.lq * h * dv, ov.strides[1] = dv, ov.strides[2] = h * dv;
    return Sdpa(qv, kv4, vv, mask, Scale(), ov, weights, attention_dtype());
  }

  // W_UK folded into the query, attention over the latent (one shared kv
  // head of width r + dr whose first r columns are also the values), W_UV
  // applied to the per-head latent output.
  absl::Status AttendAbsorbed(const Tensor& q, const Tensor& latent, const LayerInputs& in,
                              const MaskSpec& mask, float* weights, Tensor& attn) const {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, r = c.kv_lora_rank, dl = r + c.qk_rope_head_dim;
    const int64_t mq = in.batch * in.lq;
    ATTN_ASSIGN_OR_RETURN(Tensor qa, AbsorbQuery(q, mq));
    const View4 qv = Strided(qa.data(), in.batch, h, in.lq, dl, in.lq * h * dl, dl, h * dl);
    const View4 kv = Strided(latent.data(), in.batch, 1, in.lk, dl, in.lk * dl, in.lk * dl, dl);
    const View4 vv = Strided(latent.data(), in.batch, 1, in.lk, r, in.lk * dl, in.lk * dl, dl);
    Tensor out_latent({mq, h * r});
    ATTN_RETURN_IF_ERROR(Sdpa(qv, kv, vv, mask, Scale(), LatentOutView(out_latent, in.batch, in.lq),
                              weights, attention_dtype()));
    return ExpandLatent(out_latent, mq, attn);
  }

  absl::StatusOr<Tensor> DecodeStep(PagedKvCache& cache, const Tensor& x) const override {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, d = c.d_model;
    const int64_t dq = dn + dr, dl = r + dr;
    const int64_t batch = x.dim(0), t_new = x.dim(1), m = batch * t_new;
    const int64_t l0 = cache.length();
    ATTN_RETURN_IF_ERROR(cache.Reserve(t_new));
    Tensor q({m, h * dq});
    ATTN_RETURN_IF_ERROR(ProjectQuery(&x, q));
    ApplyRope(q.data() + dn, batch, t_new, h, dq, h * dq, Frequencies(), l0);
    Round(q);
    Tensor latent({m, dl});
    ATTN_RETURN_IF_ERROR(Linear(x.data(), m, d, d, Matrix("kv_a_proj_with_mqa.weight"), dl, nullptr,
                                latent.data(), dl));
    RmsNormRows(latent.data(), m, r, dl, W("kv_a_layernorm.weight").data());
    ApplyRope(latent.data() + r, batch, t_new, 1, 0, dl, Frequencies(), l0);
    Round(latent);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < t_new; ++t) {
        cache.StoreK(b, 0, l0 + t, latent.data() + (b * t_new + t) * dl);
      }
    }
    cache.Advance(t_new);
    ATTN_ASSIGN_OR_RETURN(Tensor qa, AbsorbQuery(q, m));
    Tensor out_latent({m, h * r});
    ATTN_RETURN_IF_ERROR(
        PagedSdpa(Strided(qa.data(), batch, h, t_new, dl, t_new * h * dl, dl, h * dl), cache,
                  Scale(), LatentOutView(out_latent, batch, t_new), attention_dtype()));
    Tensor attn({m, h * dv});
    ATTN_RETURN_IF_ERROR(ExpandLatent(out_latent, m, attn));
    Tensor y({batch, t_new, d});
    ATTN_RETURN_IF_ERROR(
        Linear(attn.data(), m, h * dv, h * dv, Matrix("o_proj.weight"), d, nullptr, y.data(), d));
    return y;
  }

  // [mq, H, r + dr]: q_nope_h · W_UK_h for each head, then the roped q_rope.
  absl::StatusOr<Tensor> AbsorbQuery(const Tensor& q, int64_t mq) const {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, dq = dn + dr, dl = r + dr;
    Tensor qa({mq, h * dl});
    for (int64_t hh = 0; hh < h; ++hh) {
      // q_lat_h [mq, r] = q_nope_h [mq, dn] · W_UK_h [dn, r].
      ATTN_RETURN_IF_ERROR(Matmul(Mat::RowMajor(q.data() + hh * dq, mq, dn, h * dq),
                                  KvB(hh * (dn + dv), dn, r, false), qa.data() + hh * dl, h * dl));
    }
    for (int64_t t = 0; t < mq; ++t) {
      for (int64_t hh = 0; hh < h; ++hh) {
        std::memcpy(qa.data() + (t * h + hh) * dl + r, q.data() + (t * h + hh) * dq + dn,
                    dr * sizeof(float));
      }
    }
    Round(qa);
    return qa;
  }

  // [B, H, L, r] view of a [B·L, H·r] buffer.
  MutView4 LatentOutView(Tensor& out_latent, int64_t batch, int64_t len) const {
    const int64_t h = config().num_heads, r = config().kv_lora_rank;
    MutView4 ov;
    ov.data = out_latent.data();
    ov.dims[0] = batch, ov.dims[1] = h, ov.dims[2] = len, ov.dims[3] = r;
    ov.strides[0] = len * h * r, ov.strides[1] = r, ov.strides[2] = h * r;
    return ov;
  }

  // attn [mq, H·dv] = per head out_latent_h · W_UV_hᵀ.
  absl::Status ExpandLatent(const Tensor& out_latent, int64_t mq, Tensor& attn) const {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dv = c.v_head_dim, r = c.kv_lora_rank;
    for (int64_t hh = 0; hh < h; ++hh) {
      // out_h [mq, dv] = out_latent_h [mq, r] · W_UV_hᵀ, W_UV_h [dv, r].
      ATTN_RETURN_IF_ERROR(Matmul(Mat::RowMajor(out_latent.data() + hh * r, mq, r, h * r),
                                  KvB(hh * (dn + dv) + dn, r, dv, true), attn.data() + hh * dv,
                                  h * dv));
    }
    return absl::OkStatus();
  }

  // 1/sqrt(qk_nope_head_dim + qk_rope_head_dim), times DeepSeek's yarn
  // mscale² (MlaSoftmaxScaleFactor).
  float Scale() const {
    return static_cast<float>(
        MlaSoftmaxScaleFactor(config().mla_rope_scaling) /
        std::sqrt(static_cast<double>(config().qk_nope_head_dim + config().qk_rope_head_dim)));
  }

  static View4 Strided(const float* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                       int64_t s0, int64_t s1, int64_t s2) {
    View4 v;
    v.data = data;
    v.dims[0] = d0, v.dims[1] = d1, v.dims[2] = d2, v.dims[3] = d3;
    v.strides[0] = s0, v.strides[1] = s1, v.strides[2] = s2;
    return v;
  }
};

}  // namespace

std::unique_ptr<AttentionModule> MakeLatentAttention(const ModuleConfig& config,
                                                     WeightMap weights) {
  return std::make_unique<LatentAttention>(config, std::move(weights));
}

}  // namespace attention::internal
