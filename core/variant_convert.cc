#include "core/variant_convert.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/internal/gemm.h"
#include "core/status_macros.h"

namespace attention {
namespace {

using internal::Mat;

absl::Status CheckMha(const AttentionModule& m) {
  if (m.config().variant != Variant::kMha) {
    return absl::InvalidArgumentError(
        absl::StrCat("module: expected an mha layer, got ", VariantFieldName(m.config().variant)));
  }
  return absl::OkStatus();
}

// Orthonormalises the columns of y [rows, k] in place: CholeskyQR2 (the Gram
// matrix by GEMM, Cholesky and the triangular inverse in double).
absl::Status Orthonormalize(Tensor& y) {
  const int64_t rows = y.dim(0), k = y.dim(1);
  for (int pass = 0; pass < 2; ++pass) {
    Tensor gram({k, k});
    ATTN_RETURN_IF_ERROR(internal::Matmul(Mat::Transposed(y.data(), k, rows, k),
                                          Mat::RowMajor(y.data(), rows, k, k), gram.data(), k));
    std::vector<double> l(k * k, 0.0);
    for (int64_t j = 0; j < k; ++j) {
      double d = gram.data()[j * k + j];
      for (int64_t p = 0; p < j; ++p) d -= l[j * k + p] * l[j * k + p];
      d = std::sqrt(std::max(d, 1e-30));
      l[j * k + j] = d;
      for (int64_t i = j + 1; i < k; ++i) {
        double s = gram.data()[i * k + j];
        for (int64_t p = 0; p < j; ++p) s -= l[i * k + p] * l[j * k + p];
        l[i * k + j] = s / d;
      }
    }
    // inv = L⁻ᵀ (upper triangular), then y = y · inv.
    std::vector<double> linv(k * k, 0.0);  // L⁻¹, lower
    for (int64_t j = 0; j < k; ++j) {
      linv[j * k + j] = 1.0 / l[j * k + j];
      for (int64_t i = j + 1; i < k; ++i) {
        double s = 0;
        for (int64_t p = j; p < i; ++p) s -= l[i * k + p] * linv[p * k + j];
        linv[i * k + j] = s / l[i * k + i];
      }
    }
    Tensor inv_t({k, k});  // L⁻ᵀ
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) inv_t.data()[i * k + j] = static_cast<float>(linv[j * k + i]);
    Tensor out({rows, k});
    ATTN_RETURN_IF_ERROR(internal::Matmul(Mat::RowMajor(y.data(), rows, k, k),
                                          Mat::RowMajor(inv_t.data(), k, k, k), out.data(), k));
    y = std::move(out);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DerivedModule> PoolKvHeads(const AttentionModule& mha, int64_t kv_heads) {
  ATTN_RETURN_IF_ERROR(CheckMha(mha));
  const ModuleConfig& c = mha.config();
  if (kv_heads < 1 || c.num_heads % kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_heads: must divide num_heads = ", c.num_heads, ", got ", kv_heads));
  }
  DerivedModule out;
  out.config = c;
  out.config.variant = kv_heads == 1 ? Variant::kMqa : Variant::kGqa;
  out.config.num_kv_heads = kv_heads == 1 ? 0 : kv_heads;
  const int64_t d = c.d_model, dh = HeadDimK(c), group = c.num_heads / kv_heads;
  for (const auto& [name, t] : mha.weights()) {
    const bool kv = name.rfind("W_k.", 0) == 0 || name.rfind("W_v.", 0) == 0;
    if (!kv) {
      out.weights.emplace(name, t);
      continue;
    }
    const bool is_bias = t.rank() == 1;
    const int64_t cols = is_bias ? 1 : d;
    Tensor pooled(is_bias ? std::vector<int64_t>{kv_heads * dh}
                          : std::vector<int64_t>{kv_heads * dh, d});
    for (int64_t g = 0; g < kv_heads; ++g)
      for (int64_t i = 0; i < dh; ++i)
        for (int64_t col = 0; col < cols; ++col) {
          double s = 0;
          for (int64_t m = 0; m < group; ++m) {
            s += t.data()[((g * group + m) * dh + i) * cols + col];
          }
          pooled.data()[(g * dh + i) * cols + col] = static_cast<float>(s / group);
        }
    out.weights.emplace(name, std::move(pooled));
  }
  return out;
}

absl::StatusOr<DerivedModule> LowRankMla(const AttentionModule& mha, int64_t r, int64_t dr,
                                         const Tensor& calibration, uint64_t seed) {
  ATTN_RETURN_IF_ERROR(CheckMha(mha));
  const ModuleConfig& c = mha.config();
  if (c.bias) {
    return absl::InvalidArgumentError("module: the mha layer must have no biases (MLA has none)");
  }
  const int64_t d = c.d_model, h = c.num_heads, dh = d / h;
  if (c.head_dim != 0 && c.head_dim * h != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "module: the mha layer's heads must span d_model (head_dim ", c.head_dim, " x ", h,
        " heads != d_model ", d, ")"));
  }
  if (r < 1 || r > d) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_lora_rank: expected 1..d_model = ", d, ", got ", r));
  }
  if (calibration.rank() != 2 || calibration.dim(1) != d) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: expected [N, d_model = ", d,
                                                   "], got ", ShapeString(calibration.shape())));
  }
  // W = [W_k; W_v], [2d, d].
  Tensor w({2 * d, d});
  const WeightMap weights = mha.weights();
  std::copy(weights.at("W_k.weight").values().begin(), weights.at("W_k.weight").values().end(),
            w.data());
  std::copy(weights.at("W_v.weight").values().begin(), weights.at("W_v.weight").values().end(),
            w.data() + d * d);
  // Randomized subspace iteration for the top-r left subspace Q [2d, r].
  Tensor omega({d, r});
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal;
  for (float& x : omega.values()) x = normal(gen);
  Tensor q({2 * d, r});
  ATTN_RETURN_IF_ERROR(internal::Matmul(Mat::RowMajor(w.data(), 2 * d, d, d),
                                        Mat::RowMajor(omega.data(), d, r, r), q.data(), r));
  ATTN_RETURN_IF_ERROR(Orthonormalize(q));
  for (int it = 0; it < 2; ++it) {
    Tensor z({d, r});  // Wᵀ Q
    ATTN_RETURN_IF_ERROR(internal::Matmul(Mat::Transposed(w.data(), d, 2 * d, d),
                                          Mat::RowMajor(q.data(), 2 * d, r, r), z.data(), r));
    ATTN_RETURN_IF_ERROR(Orthonormalize(z));
    ATTN_RETURN_IF_ERROR(internal::Matmul(Mat::RowMajor(w.data(), 2 * d, d, d),
                                          Mat::RowMajor(z.data(), d, r, r), q.data(), r));
    ATTN_RETURN_IF_ERROR(Orthonormalize(q));
  }
  // C = Qᵀ W [r, d]: the latent down-projection; W ≈ Q C.
  Tensor down({r, d});
  ATTN_RETURN_IF_ERROR(internal::Matmul(Mat::Transposed(q.data(), r, 2 * d, r),
                                        Mat::RowMajor(w.data(), 2 * d, d, d), down.data(), d));
  // Mean RMS of the latent over the calibration rows sets the norm weight.
  const int64_t n = calibration.dim(0);
  Tensor lat({n, r});
  ATTN_RETURN_IF_ERROR(
      internal::Linear(calibration.data(), n, d, d, down.data(), r, nullptr, lat.data(), r));
  double rms_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < r; ++j)
      s += static_cast<double>(lat.data()[i * r + j]) * lat.data()[i * r + j];
    rms_sum += std::sqrt(s / r + 1e-6);
  }
  const float rho = static_cast<float>(rms_sum / n);

  DerivedModule out;
  out.config.variant = Variant::kMla;
  out.config.d_model = d;
  out.config.bias = false;
  out.config.num_heads = h;
  out.config.q_lora_rank = 0;
  out.config.kv_lora_rank = r;
  out.config.qk_nope_head_dim = dh;
  out.config.qk_rope_head_dim = dr;
  out.config.v_head_dim = dh;
  const float qscale = std::sqrt(static_cast<float>(dh + dr) / static_cast<float>(dh));
  Tensor q_proj({h * (dh + dr), d});
  const WeightMap mha_weights = mha.weights();
  const float* wq = mha_weights.at("W_q.weight").data();
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < dh; ++i)
      for (int64_t j = 0; j < d; ++j) {
        q_proj.data()[(hh * (dh + dr) + i) * d + j] = wq[(hh * dh + i) * d + j] * qscale;
      }
  Tensor kv_a({r + dr, d});
  std::copy(down.values().begin(), down.values().end(), kv_a.data());
  Tensor kv_b({h * 2 * dh, r});  // per head [k_nope (dh) | v (dh)] rows of Q
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < dh; ++i)
      for (int64_t j = 0; j < r; ++j) {
        kv_b.data()[(hh * 2 * dh + i) * r + j] = q.data()[(hh * dh + i) * r + j];
        kv_b.data()[(hh * 2 * dh + dh + i) * r + j] = q.data()[(d + hh * dh + i) * r + j];
      }
  Tensor norm({r});
  std::fill(norm.values().begin(), norm.values().end(), rho);
  out.weights.emplace("q_proj.weight", std::move(q_proj));
  out.weights.emplace("kv_a_proj_with_mqa.weight", std::move(kv_a));
  out.weights.emplace("kv_a_layernorm.weight", std::move(norm));
  out.weights.emplace("kv_b_proj.weight", std::move(kv_b));
  out.weights.emplace("o_proj.weight", mha_weights.at("W_o.weight"));
  return out;
}

}  // namespace attention
