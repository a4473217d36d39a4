#include "core/cost_model.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace attention {

double SdpaFlops(int64_t b, int64_t hq, int64_t lq, int64_t lk, int64_t dk, int64_t dv,
                 bool causal, int64_t window) {
  const double q = static_cast<double>(lq), k = static_cast<double>(lk);
  // Causal, bottom-right: query i sees min(i + Lk - Lq + 1, Lk) keys, at
  // least 0; in closed form (no loop over Lq, no int64 products).
  double pairs = !causal    ? q * k
                 : lq <= lk ? q * (k - q + 1) + q * (q - 1) / 2
                            : k * (k + 1) / 2;
  if (window > 0) {
    // The query at position p (0 <= p < Lk; those before 0 see nothing)
    // sees min(p + 1, W) keys: p + 1 up to W - 1, then W each.
    const double w = static_cast<double>(window);
    const double first = std::max(0.0, k - q), last = k - 1;  // positions
    const double ramp_end = std::min(last, w - 1);
    pairs = 0;
    if (ramp_end >= first) pairs += (first + 1 + ramp_end + 1) * (ramp_end - first + 1) / 2;
    const double flat_start = std::max(first, w);
    if (last >= flat_start) pairs += w * (last - flat_start + 1);
  }
  return 2.0 * static_cast<double>(b) * static_cast<double>(hq) * pairs *
         (static_cast<double>(dk) + static_cast<double>(dv));
}

double LayerFlops(const ModuleConfig& c, int64_t b, int64_t lq, int64_t lk, int64_t kv_projected,
                  bool causal, MlaForm form) {
  const double rows_q = static_cast<double>(b) * lq,
               rows_kv = static_cast<double>(b) * kv_projected;
  const double d = static_cast<double>(c.d_model);
  if (c.variant != Variant::kMla) {
    const int64_t hq = NumQueryHeads(c), hkv = NumKvHeads(c);
    const int64_t dqk = HeadDimK(c), dv = HeadDimV(c);
    double f = 2.0 * rows_q * d * static_cast<double>(hq) * static_cast<double>(dqk) +
               2.0 * rows_kv * d * static_cast<double>(hkv) * static_cast<double>(dqk + dv) +
               SdpaFlops(b, hq, lq, lk, dqk, dv, causal, c.sliding_window);
    if (c.variant != Variant::kSelfAttention) {
      f += 2.0 * rows_q * static_cast<double>(hq) * static_cast<double>(dv) * d;
    }
    return f;
  }
  const double h = static_cast<double>(c.num_heads), dn = static_cast<double>(c.qk_nope_head_dim),
               dr = static_cast<double>(c.qk_rope_head_dim), dv = static_cast<double>(c.v_head_dim),
               r = static_cast<double>(c.kv_lora_rank), qr = static_cast<double>(c.q_lora_rank);
  double f = c.q_lora_rank > 0 ? 2.0 * rows_q * (d * qr + qr * h * (dn + dr))
                               : 2.0 * rows_q * d * h * (dn + dr);
  f += 2.0 * rows_kv * d * (r + dr);  // kv_a_proj_with_mqa
  if (form == MlaForm::kAbsorbed) {
    f += 2.0 * rows_q * h * dn * r + 2.0 * rows_q * h * r * dv +
         SdpaFlops(b, c.num_heads, lq, lk, c.kv_lora_rank + c.qk_rope_head_dim, c.kv_lora_rank,
                   causal);
  } else {
    f += 2.0 * rows_kv * r * h * (dn + dv) + SdpaFlops(b, c.num_heads, lq, lk,
                                                       c.qk_nope_head_dim + c.qk_rope_head_dim,
                                                       c.v_head_dim, causal);
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
    floats +=
        rows_q * (h * dq + static_cast<double>(c.q_lora_rank) + h * dl) +
        rows_k * (dl + h * dkv + h * dq) +
        rows_q * h * (static_cast<double>(c.v_head_dim) + static_cast<double>(c.kv_lora_rank));
  } else {
    const double hkv = static_cast<double>(NumKvHeads(c));
    const double dqk = static_cast<double>(HeadDimK(c)), dv = static_cast<double>(HeadDimV(c));
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
    return absl::InvalidArgumentError(absl::StrCat("batch: expected 0..", kMax, ", got ", batch));
  }
  if (seq_len < 0 || seq_len > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len: expected 0..", kMax, ", got ", seq_len));
  }
  CostEstimate e;
  e.parameters = ParameterCount(config);
  e.kv_cache_bytes_per_token = KvCacheBytesPerToken(config);
  if (batch != 0 && seq_len != 0 && e.kv_cache_bytes_per_token > INT64_MAX / batch / seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len: kv_cache_bytes = ", e.kv_cache_bytes_per_token, " x batch ", batch,
                     " x ", seq_len, " overflows int64"));
  }
  e.kv_cache_bytes = e.kv_cache_bytes_per_token * batch * seq_len;
  e.prefill_flops = LayerFlops(config, batch, seq_len, seq_len, seq_len, true, MlaForm::kNaive);
  e.decode_flops_per_token =
      LayerFlops(config, 1, 1, seq_len + 1, 1, true,
                 config.variant == Variant::kMla ? MlaForm::kAbsorbed : MlaForm::kNaive);
  return e;
}

}  // namespace attention
