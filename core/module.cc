#include "core/module.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/cancellation.h"
#include "core/internal/gemm.h"
#include "core/internal/layer_ops.h"
#include "core/kv_cache.h"
#include "core/paged_attention.h"
#include "core/status_macros.h"

namespace attention {
namespace {

using internal::Linear;
using internal::Mat;

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
    return absl::InvalidArgumentError(absl::StrCat(field, ": must divide ", what, " = ", value,
                                                   ", got ", divisor));
  }
  return absl::OkStatus();
}

int64_t HeadDim(const ModuleConfig& c) { return c.d_model / NumQueryHeads(c); }

// Maps accepted aliases to canonical state_dict names (w_q.weight -> W_q.weight
// for the multi-head variants).
std::string CanonicalName(const ModuleConfig& c, const std::string& name) {
  if (c.variant == Variant::kMha || c.variant == Variant::kGqa || c.variant == Variant::kMqa) {
    for (const char* p : {"w_q.", "w_k.", "w_v.", "w_o."}) {
      if (absl::StartsWith(name, p)) return "W" + name.substr(1);
    }
  }
  return name;
}

// Deterministic generator: SplitMix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Symmetric() { return static_cast<float>(static_cast<double>(Next() >> 40) * 0x1p-23 - 1.0); }

 private:
  uint64_t state_;
};

uint64_t NameHash(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

absl::Status CheckInput(const ConstTensorRef& t, const char* field, int64_t d_model) {
  if (t.rank() != 3 || t.dim(0) < 1 || t.dim(1) < 1 || t.dim(2) != d_model) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected [B, L, d_model = ", d_model,
                                                   "] with B, L >= 1, got ",
                                                   ShapeString(t.shape)));
  }
  return absl::OkStatus();
}

struct Inputs {
  const ConstTensorRef* query;
  const ConstTensorRef* key;
  const ConstTensorRef* value;
  int64_t batch, lq, lk;
};

absl::StatusOr<Inputs> ResolveInputs(const ForwardInput& in, int64_t d_model, bool single_kv) {
  if (!in.query.present) return absl::InvalidArgumentError("query: required");
  Inputs r;
  r.query = &in.query;
  r.key = in.key.present ? &in.key : &in.query;
  r.value = in.value.present ? &in.value : r.key;
  ATTN_RETURN_IF_ERROR(CheckInput(*r.query, "query", d_model));
  ATTN_RETURN_IF_ERROR(CheckInput(*r.key, "key", d_model));
  ATTN_RETURN_IF_ERROR(CheckInput(*r.value, "value", d_model));
  r.batch = r.query->dim(0);
  r.lq = r.query->dim(1);
  r.lk = r.key->dim(1);
  if (r.key->dim(0) != r.batch) {
    return absl::InvalidArgumentError(absl::StrCat("key: dim 0 (B) expected ", r.batch,
                                                   " (as query), got ", r.key->dim(0)));
  }
  if (r.value->dim(0) != r.batch || r.value->dim(1) != r.lk) {
    return absl::InvalidArgumentError(absl::StrCat("value: expected [B, Lk] = [", r.batch, ", ",
                                                   r.lk, "] as key, got ",
                                                   ShapeString(r.value->shape)));
  }
  if (single_kv && r.value != r.key && r.value->data != r.key->data &&
      std::memcmp(r.value->data, r.key->data, r.key->size() * 4) != 0) {
    return absl::InvalidArgumentError(
        "value: mla derives keys and values from one latent of `key`; value must be absent or "
        "equal to key");
  }
  return r;
}

// Where a result of `shape` goes: the caller's buffer when given (already
// sized), else `owned`, allocated to `shape`.
float* Destination(float* given, Tensor& owned, std::vector<int64_t> shape) {
  if (given != nullptr) return given;
  owned = Tensor(std::move(shape));
  return owned.data();
}

// ----------------------------------------------------------------------------
// self_attention, mha, gqa, mqa: project, attend over heads, project out.
class ProjectedAttention final : public AttentionModule {
 public:
  ProjectedAttention(const ModuleConfig& c, WeightMap w) : AttentionModule(c, std::move(w)) {
    hq_ = NumQueryHeads(c);
    hkv_ = NumKvHeads(c);
    if (c.variant == Variant::kSelfAttention) {
      dqk_ = c.d_k;
      dv_ = c.d_v;
      q_ = "w_q";
      k_ = "w_k";
      v_ = "w_v";
    } else {
      dqk_ = dv_ = HeadDim(c);
      q_ = "W_q";
      k_ = "W_k";
      v_ = "W_v";
      o_ = "W_o";
    }
  }

  absl::StatusOr<ForwardResult> Forward(const ForwardInput& input) const override {
    const ModuleConfig& c = config();
    ATTN_ASSIGN_OR_RETURN(Inputs in, ResolveInputs(input, c.d_model, false));
    const View4 shape_q = View4::Dense(nullptr, in.batch, hq_, in.lq, dqk_);
    const View4 shape_k = View4::Dense(nullptr, in.batch, hkv_, in.lk, dqk_);
    const View4 shape_v = View4::Dense(nullptr, in.batch, hkv_, in.lk, dv_);
    ATTN_RETURN_IF_ERROR(ValidateSdpa(shape_q, shape_k, shape_v, input.mask));

    const int64_t mq = in.batch * in.lq, mk = in.batch * in.lk, d = c.d_model;
    Tensor q({mq, hq_ * dqk_}), k({mk, hkv_ * dqk_}), v({mk, hkv_ * dv_});
    const CancellationCheck* cancel = CurrentCancellation();
    ATTN_RETURN_IF_ERROR(Project(*in.query, q_, hq_ * dqk_, q));
    ATTN_RETURN_IF_ERROR(Project(*in.key, k_, hkv_ * dqk_, k));
    ATTN_RETURN_IF_ERROR(Project(*in.value, v_, hkv_ * dv_, v));
    ATTN_RETURN_IF_ERROR(PollCancellation(cancel));

    // [B, L, H, D] buffers read as [B, H, L, D] through strides.
    ForwardResult result;
    // Without an output projection (self_attention) attention writes the
    // layer's output itself.
    Tensor attn_owned;
    float* attn = Destination(o_.empty() ? input.output : nullptr,
                              o_.empty() ? result.output : attn_owned,
                              {in.batch, in.lq, hq_ * dv_});
    float* weights = input.return_weights
                         ? Destination(input.weights, result.weights, {in.batch, hq_, in.lq, in.lk})
                         : nullptr;
    ATTN_RETURN_IF_ERROR(Sdpa(HeadsView(q.data(), in.batch, hq_, in.lq, dqk_),
                              HeadsView(k.data(), in.batch, hkv_, in.lk, dqk_),
                              HeadsView(v.data(), in.batch, hkv_, in.lk, dv_), input.mask, 0.0f,
                              MutHeadsView(attn, in.batch, hq_, in.lq, dv_), weights));
    result.flops =
        LayerFlops(c, in.batch, in.lq, in.lk, in.lk, input.mask.causal, MlaForm::kNaive);
    if (o_.empty()) return result;
    ATTN_RETURN_IF_ERROR(PollCancellation(cancel));
    float* y = Destination(input.output, result.output, {in.batch, in.lq, d});
    ATTN_RETURN_IF_ERROR(
        Linear(attn, mq, hq_ * dv_, hq_ * dv_, W(o_ + ".weight").data(), d, Bias(o_), y, d));
    return result;
  }

 private:
  const float* Bias(const std::string& prefix) const {
    return config().bias ? W(prefix + ".bias").data() : nullptr;
  }

  absl::Status Project(const ConstTensorRef& x, const std::string& prefix, int64_t n,
                       Tensor& y) const {
    const int64_t m = x.dim(0) * x.dim(1), k = x.dim(2);
    return Linear(x.data, m, k, k, W(prefix + ".weight").data(), n, Bias(prefix), y.data(), n);
  }

  absl::StatusOr<Tensor> DecodeStep(PagedKvCache& cache, const Tensor& x) const override {
    const int64_t batch = x.dim(0), t_new = x.dim(1), m = batch * t_new;
    const int64_t l0 = cache.length();
    ATTN_RETURN_IF_ERROR(cache.Reserve(t_new));
    Tensor q({m, hq_ * dqk_}), k({m, hkv_ * dqk_}), v({m, hkv_ * dv_});
    ATTN_RETURN_IF_ERROR(Project(&x, q_, hq_ * dqk_, q));
    ATTN_RETURN_IF_ERROR(Project(&x, k_, hkv_ * dqk_, k));
    ATTN_RETURN_IF_ERROR(Project(&x, v_, hkv_ * dv_, v));
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < t_new; ++t) {
        for (int64_t h = 0; h < hkv_; ++h) {
          std::memcpy(cache.K(b, h, l0 + t), k.data() + ((b * t_new + t) * hkv_ + h) * dqk_,
                      dqk_ * sizeof(float));
          std::memcpy(cache.V(b, h, l0 + t), v.data() + ((b * t_new + t) * hkv_ + h) * dv_,
                      dv_ * sizeof(float));
        }
      }
    }
    cache.Advance(t_new);
    Tensor attn({batch, t_new, hq_ * dv_});
    ATTN_RETURN_IF_ERROR(PagedSdpa(HeadsView(q.data(), batch, hq_, t_new, dqk_), cache,
                                   1.0f / std::sqrt(static_cast<float>(dqk_)),
                                   MutHeadsView(attn.data(), batch, hq_, t_new, dv_)));
    if (o_.empty()) return attn;
    const int64_t d = config().d_model;
    Tensor y({batch, t_new, d});
    ATTN_RETURN_IF_ERROR(Linear(attn.data(), m, hq_ * dv_, hq_ * dv_, W(o_ + ".weight").data(), d,
                                Bias(o_), y.data(), d));
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

// ----------------------------------------------------------------------------
// mla: DeepSeek-V2 multi-head latent attention, naive and absorbed forms.
class LatentAttention final : public AttentionModule {
 public:
  LatentAttention(const ModuleConfig& c, WeightMap w) : AttentionModule(c, std::move(w)) {}

  absl::StatusOr<ForwardResult> Forward(const ForwardInput& input) const override {
    const ModuleConfig& c = config();
    ATTN_ASSIGN_OR_RETURN(Inputs in, ResolveInputs(input, c.d_model, true));
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
    internal::ApplyRope(q.data() + dn, in.batch, in.lq, h, dq, h * dq, dr, Theta(), 0);

    // Latent: [B·Lk, r + dr] = [RMSNorm(c_KV) | RoPE(k_rope)].
    Tensor latent({mk, r + dr});
    ATTN_RETURN_IF_ERROR(Linear(in.key->data, mk, d, d, W("kv_a_proj_with_mqa.weight").data(),
                                r + dr, nullptr, latent.data(), r + dr));
    internal::RmsNormRows(latent.data(), mk, r, r + dr, W("kv_a_layernorm.weight").data());
    internal::ApplyRope(latent.data() + r, in.batch, in.lk, 1, 0, r + dr, dr, Theta(), 0);

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
        Linear(attn.data(), mq, h * dv, h * dv, W("o_proj.weight").data(), d, nullptr, y, d));
    result.flops = LayerFlops(c, in.batch, in.lq, in.lk, in.lk, input.mask.causal, input.mla_form);
    return result;
  }

 private:
  float Theta() const { return config().rope_theta == 0 ? 10000.0f : config().rope_theta; }

  absl::Status ProjectQuery(const ConstTensorRef& x, Tensor& q) const {
    const ModuleConfig& c = config();
    const int64_t m = x.dim(0) * x.dim(1), d = c.d_model, n = q.dim(1);
    if (c.q_lora_rank == 0) {
      return Linear(x.data, m, d, d, W("q_proj.weight").data(), n, nullptr, q.data(), n);
    }
    const int64_t qr = c.q_lora_rank;
    Tensor cq({m, qr});
    ATTN_RETURN_IF_ERROR(
        Linear(x.data, m, d, d, W("q_a_proj.weight").data(), qr, nullptr, cq.data(), qr));
    internal::RmsNormRows(cq.data(), m, qr, qr, W("q_a_layernorm.weight").data());
    return Linear(cq.data(), m, qr, qr, W("q_b_proj.weight").data(), n, nullptr, q.data(), n);
  }

  // Per-head K = [k_nope_h | k_rope] and V from kv_b_proj(c_KV).
  absl::Status AttendNaive(const Tensor& q, const Tensor& latent, const Inputs& in,
                           const MaskSpec& mask, float* weights, Tensor& attn) const {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, dq = dn + dr;
    const int64_t mk = in.batch * in.lk;
    Tensor kv({mk, h * (dn + dv)});
    ATTN_RETURN_IF_ERROR(Linear(latent.data(), mk, r, r + dr, W("kv_b_proj.weight").data(),
                                h * (dn + dv), nullptr, kv.data(), h * (dn + dv)));
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
    const View4 vv = Strided(kv.data() + dn, in.batch, h, in.lk, dv, in.lk * h * (dn + dv),
                             dn + dv, h * (dn + dv));
    MutView4 ov;
    ov.data = attn.data();
    ov.dims[0] = in.batch, ov.dims[1] = h, ov.dims[2] = in.lq, ov.dims[3] = dv;
    ov.strides[0] = in.lq * h * dv, ov.strides[1] = dv, ov.strides[2] = h * dv;
    return Sdpa(qv, kv4, vv, mask, Scale(), ov, weights);
  }

  // W_UK folded into the query, attention over the latent (one shared kv
  // head of width r + dr whose first r columns are also the values), W_UV
  // applied to the per-head latent output.
  absl::Status AttendAbsorbed(const Tensor& q, const Tensor& latent, const Inputs& in,
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
                              weights));
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
    internal::ApplyRope(q.data() + dn, batch, t_new, h, dq, h * dq, dr, Theta(), l0);
    Tensor latent({m, dl});
    ATTN_RETURN_IF_ERROR(Linear(x.data(), m, d, d, W("kv_a_proj_with_mqa.weight").data(), dl,
                                nullptr, latent.data(), dl));
    internal::RmsNormRows(latent.data(), m, r, dl, W("kv_a_layernorm.weight").data());
    internal::ApplyRope(latent.data() + r, batch, t_new, 1, 0, dl, dr, Theta(), l0);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < t_new; ++t) {
        std::memcpy(cache.K(b, 0, l0 + t), latent.data() + (b * t_new + t) * dl,
                    dl * sizeof(float));
      }
    }
    cache.Advance(t_new);
    ATTN_ASSIGN_OR_RETURN(Tensor qa, AbsorbQuery(q, m));
    Tensor out_latent({m, h * r});
    ATTN_RETURN_IF_ERROR(
        PagedSdpa(Strided(qa.data(), batch, h, t_new, dl, t_new * h * dl, dl, h * dl), cache,
                  Scale(), LatentOutView(out_latent, batch, t_new)));
    Tensor attn({m, h * dv});
    ATTN_RETURN_IF_ERROR(ExpandLatent(out_latent, m, attn));
    Tensor y({batch, t_new, d});
    ATTN_RETURN_IF_ERROR(Linear(attn.data(), m, h * dv, h * dv, W("o_proj.weight").data(), d,
                                nullptr, y.data(), d));
    return y;
  }

  // [mq, H, r + dr]: q_nope_h · W_UK_h for each head, then the roped q_rope.
  absl::StatusOr<Tensor> AbsorbQuery(const Tensor& q, int64_t mq) const {
    const ModuleConfig& c = config();
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, dq = dn + dr, dl = r + dr;
    const float* wkvb = W("kv_b_proj.weight").data();  // [H·(dn+dv), r]
    Tensor qa({mq, h * dl});
    for (int64_t hh = 0; hh < h; ++hh) {
      // q_lat_h [mq, r] = q_nope_h [mq, dn] · W_UK_h [dn, r].
      ATTN_RETURN_IF_ERROR(internal::Matmul(
          Mat::RowMajor(q.data() + hh * dq, mq, dn, h * dq),
          Mat::RowMajor(wkvb + hh * (dn + dv) * r, dn, r, r), qa.data() + hh * dl, h * dl));
    }
    for (int64_t t = 0; t < mq; ++t) {
      for (int64_t hh = 0; hh < h; ++hh) {
        std::memcpy(qa.data() + (t * h + hh) * dl + r, q.data() + (t * h + hh) * dq + dn,
                    dr * sizeof(float));
      }
    }
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
    const int64_t h = c.num_heads, dn = c.qk_nope_head_dim, dv = c.v_head_dim,
                  r = c.kv_lora_rank;
    const float* wkvb = W("kv_b_proj.weight").data();
    for (int64_t hh = 0; hh < h; ++hh) {
      // out_h [mq, dv] = out_latent_h [mq, r] · W_UV_hᵀ, W_UV_h [dv, r].
      ATTN_RETURN_IF_ERROR(internal::Matmul(
          Mat::RowMajor(out_latent.data() + hh * r, mq, r, h * r),
          Mat::Transposed(wkvb + (hh * (dn + dv) + dn) * r, r, dv, r), attn.data() + hh * dv,
          h * dv));
    }
    return absl::OkStatus();
  }

  float Scale() const {
    return 1.0f / std::sqrt(static_cast<float>(config().qk_nope_head_dim +
                                               config().qk_rope_head_dim));
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

std::unique_ptr<AttentionModule> MakeModule(const ModuleConfig& config, WeightMap weights) {
  if (config.variant == Variant::kMla) {
    return std::unique_ptr<AttentionModule>(new LatentAttention(config, std::move(weights)));
  }
  return std::unique_ptr<AttentionModule>(new ProjectedAttention(config, std::move(weights)));
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

absl::Status ValidateConfig(const ModuleConfig& c) {
  ATTN_RETURN_IF_ERROR(CheckRange("config.d_model", c.d_model, 1));
  switch (c.variant) {
    case Variant::kSelfAttention:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "d_k"), c.d_k, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "d_v"), c.d_v, 1));
      return absl::OkStatus();
    case Variant::kMha:
    case Variant::kMqa:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_heads"), c.num_heads, 1));
      return CheckDivides(Field(c, "num_heads"), c.num_heads, "d_model", c.d_model);
    case Variant::kGqa:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_q_heads"), c.num_heads, 1));
      ATTN_RETURN_IF_ERROR(CheckDivides(Field(c, "num_q_heads"), c.num_heads, "d_model",
                                        c.d_model));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_kv_heads"), c.num_kv_heads, 1));
      return CheckDivides(Field(c, "num_kv_heads"), c.num_kv_heads, "num_q_heads", c.num_heads);
    case Variant::kMla:
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "num_heads"), c.num_heads, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "q_lora_rank"), c.q_lora_rank, 0));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "kv_lora_rank"), c.kv_lora_rank, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "qk_nope_head_dim"), c.qk_nope_head_dim, 1));
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "qk_rope_head_dim"), c.qk_rope_head_dim, 2));
      if (c.qk_rope_head_dim % 2 != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            Field(c, "qk_rope_head_dim"), ": expected an even number (rotate-half RoPE), got ",
            c.qk_rope_head_dim));
      }
      ATTN_RETURN_IF_ERROR(CheckRange(Field(c, "v_head_dim"), c.v_head_dim, 1));
      if (!(c.rope_theta >= 0.0) || !std::isfinite(c.rope_theta)) {
        return absl::InvalidArgumentError(absl::StrCat(
            Field(c, "rope_theta"), ": expected a finite value >= 0 (0: 10000), got ",
            c.rope_theta));
      }
      // Per-head products must stay far from int64 overflow.
      if (c.num_heads * (c.qk_nope_head_dim + c.v_head_dim) > kMaxConfigDim * 64) {
        return absl::InvalidArgumentError(absl::StrCat(
            Field(c, "num_heads"), ": num_heads·(qk_nope_head_dim + v_head_dim) must be <= ",
            kMaxConfigDim * 64));
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
      const int64_t kv = NumKvHeads(c) * HeadDim(c);
      linear("W_q", d, d, c.bias);
      linear("W_k", kv, d, c.bias);
      linear("W_v", kv, d, c.bias);
      linear("W_o", d, d, c.bias);
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

int64_t KvCacheBytesPerToken(const ModuleConfig& c) {
  constexpr int64_t kFloatBytes = 4;
  switch (c.variant) {
    case Variant::kSelfAttention:
      return (c.d_k + c.d_v) * kFloatBytes;
    case Variant::kMla:
      return (c.kv_lora_rank + c.qk_rope_head_dim) * kFloatBytes;
    default:
      return 2 * NumKvHeads(c) * HeadDim(c) * kFloatBytes;
  }
}

double LayerFlops(const ModuleConfig& c, int64_t b, int64_t lq, int64_t lk, int64_t kv_projected,
                  bool causal, MlaForm form) {
  const double rows_q = static_cast<double>(b) * lq, rows_kv = static_cast<double>(b) * kv_projected;
  const double d = static_cast<double>(c.d_model);
  if (c.variant != Variant::kMla) {
    const int64_t hq = NumQueryHeads(c), hkv = NumKvHeads(c);
    const int64_t dqk = c.variant == Variant::kSelfAttention ? c.d_k : HeadDim(c);
    const int64_t dv = c.variant == Variant::kSelfAttention ? c.d_v : HeadDim(c);
    double f = 2.0 * rows_q * d * static_cast<double>(hq * dqk) +
               2.0 * rows_kv * d * static_cast<double>(hkv * (dqk + dv)) +
               SdpaFlops(b, hq, lq, lk, dqk, dv, causal);
    if (c.variant != Variant::kSelfAttention) f += 2.0 * rows_q * static_cast<double>(hq * dv) * d;
    return f;
  }
  const double h = static_cast<double>(c.num_heads), dn = static_cast<double>(c.qk_nope_head_dim),
               dr = static_cast<double>(c.qk_rope_head_dim),
               dv = static_cast<double>(c.v_head_dim), r = static_cast<double>(c.kv_lora_rank),
               qr = static_cast<double>(c.q_lora_rank);
  double f = c.q_lora_rank > 0 ? 2.0 * rows_q * (d * qr + qr * h * (dn + dr))
                               : 2.0 * rows_q * d * h * (dn + dr);
  f += 2.0 * rows_kv * d * (r + dr);  // kv_a_proj_with_mqa
  if (form == MlaForm::kAbsorbed) {
    f += 2.0 * rows_q * h * dn * r + 2.0 * rows_q * h * r * dv +
         SdpaFlops(b, c.num_heads, lq, lk, c.kv_lora_rank + c.qk_rope_head_dim, c.kv_lora_rank,
                   causal);
  } else {
    f += 2.0 * rows_kv * r * h * (dn + dv) +
         SdpaFlops(b, c.num_heads, lq, lk, c.qk_nope_head_dim + c.qk_rope_head_dim, c.v_head_dim,
                   causal);
  }
  return f + 2.0 * rows_q * h * dv * d;  // o_proj
}

int64_t ForwardWorkingBytes(const ModuleConfig& c, int64_t b, int64_t lq, int64_t lk,
                            bool return_weights) {
  // Float counts in double: no overflow, and a huge value is refused anyway.
  const double d = static_cast<double>(c.d_model), h = static_cast<double>(NumQueryHeads(c));
  const double rows_q = static_cast<double>(b) * lq, rows_k = static_cast<double>(b) * lk;
  double floats = rows_q * d + 2 * rows_k * d;  // decoded inputs
  if (c.variant == Variant::kMla) {
    const double dq = static_cast<double>(c.qk_nope_head_dim + c.qk_rope_head_dim);
    const double dl = static_cast<double>(c.kv_lora_rank + c.qk_rope_head_dim);
    const double dkv = static_cast<double>(c.qk_nope_head_dim + c.v_head_dim);
    floats += rows_q * (h * dq + static_cast<double>(c.q_lora_rank) + h * dl) +
              rows_k * (dl + h * dkv + h * dq) +
              rows_q * h * (static_cast<double>(c.v_head_dim) + static_cast<double>(c.kv_lora_rank));
  } else {
    const double hkv = static_cast<double>(NumKvHeads(c));
    const double dqk = c.variant == Variant::kSelfAttention ? static_cast<double>(c.d_k) : d / h;
    const double dv = c.variant == Variant::kSelfAttention ? static_cast<double>(c.d_v) : d / h;
    floats += rows_q * h * (dqk + dv) + rows_k * hkv * (dqk + dv);
  }
  floats += rows_q * static_cast<double>(OutputDim(c));
  if (return_weights) floats += rows_q * h * static_cast<double>(lk);
  const double bytes = floats * 4 + 8.0 * (1 << 20);  // + per-thread tiles
  return bytes > 9e18 ? INT64_MAX : static_cast<int64_t>(bytes);
}

absl::StatusOr<CostEstimate> EstimateCosts(const ModuleConfig& config, int64_t batch,
                                           int64_t seq_len) {
  ATTN_RETURN_IF_ERROR(ValidateConfig(config));
  constexpr int64_t kMax = int64_t{1} << 31;
  if (batch < 0 || batch > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch: expected 0..", kMax, ", got ", batch));
  }
  if (seq_len < 0 || seq_len > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len: expected 0..", kMax, ", got ", seq_len));
  }
  CostEstimate e;
  e.parameters = ParameterCount(config);
  e.kv_cache_bytes_per_token = KvCacheBytesPerToken(config);
  if (batch != 0 && seq_len != 0 && e.kv_cache_bytes_per_token > INT64_MAX / batch / seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "seq_len: kv_cache_bytes = ", e.kv_cache_bytes_per_token, " x batch ", batch, " x ",
        seq_len, " overflows int64"));
  }
  e.kv_cache_bytes = e.kv_cache_bytes_per_token * batch * seq_len;
  e.prefill_flops = LayerFlops(config, batch, seq_len, seq_len, seq_len, true, MlaForm::kNaive);
  e.decode_flops_per_token = LayerFlops(config, 1, 1, seq_len + 1, 1, true,
                                        config.variant == Variant::kMla ? MlaForm::kAbsorbed
                                                                        : MlaForm::kNaive);
  return e;
}

absl::StatusOr<std::unique_ptr<AttentionModule>> AttentionModule::Create(const ModuleConfig& config,
                                                                         WeightMap weights) {
  ATTN_RETURN_IF_ERROR(ValidateConfig(config));
  const std::vector<WeightSpec> specs = ExpectedWeights(config);
  std::vector<std::string> expected_names;
  for (const WeightSpec& s : specs) expected_names.push_back(s.name);
  WeightMap canonical;
  for (auto& [name, tensor] : weights) {
    const std::string canon = CanonicalName(config, name);
    bool known = false;
    for (const WeightSpec& s : specs) known = known || s.name == canon;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights: unexpected tensor '", name, "' for ", VariantFieldName(config.variant),
          config.variant != Variant::kMla && !config.bias && absl::EndsWith(name, ".bias")
              ? " with config.bias = false"
              : "",
          " (expected: ", absl::StrJoin(expected_names, ", "), ")"));
    }
    if (canonical.count(canon) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: '", name, "' given twice (as '", canon, "' and an alias)"));
    }
    canonical.emplace(canon, std::move(tensor));
  }
  for (const WeightSpec& s : specs) {
    auto it = canonical.find(s.name);
    if (it == canonical.end()) {
      return absl::InvalidArgumentError(absl::StrCat("weights: missing tensor '", s.name,
                                                     "' (expected shape ", ShapeString(s.shape),
                                                     ")"));
    }
    if (it->second.shape() != s.shape) {
      return absl::InvalidArgumentError(absl::StrCat("weights['", s.name, "']: expected shape ",
                                                     ShapeString(s.shape), ", got ",
                                                     ShapeString(it->second.shape())));
    }
    if (it->second.size() != NumElements(s.shape)) {
      return absl::InvalidArgumentError(absl::StrCat("weights['", s.name, "']: shape ",
                                                     ShapeString(s.shape), " needs ",
                                                     NumElements(s.shape), " values, got ",
                                                     it->second.size()));
    }
  }
  return MakeModule(config, std::move(canonical));
}

absl::StatusOr<std::unique_ptr<AttentionModule>> AttentionModule::CreateRandom(
    const ModuleConfig& config, uint64_t seed) {
  ATTN_RETURN_IF_ERROR(ValidateConfig(config));
  WeightMap weights;
  for (const WeightSpec& s : ExpectedWeights(config)) {
    Tensor t(s.shape);
    if (absl::StrContains(s.name, "layernorm")) {
      std::fill(t.values().begin(), t.values().end(), 1.0f);
    } else {
      // nn.Linear: U(-1/sqrt(in_features), 1/sqrt(in_features)) for both.
      const int64_t fan_in = s.shape.size() == 2
                                 ? s.shape[1]
                                 : weights.at(s.name.substr(0, s.name.size() - 5) + ".weight")
                                       .dim(1);
      const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
      Rng rng(seed ^ NameHash(s.name));
      for (float& x : t.values()) x = bound * rng.Symmetric();
    }
    weights.emplace(s.name, std::move(t));
  }
  return MakeModule(config, std::move(weights));
}

}  // namespace attention
