#include "core/sdpa.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cancellation.h"
#include "core/dtype.h"
#include "core/internal/gemm.h"
#include "core/internal/sdpa_paths.h"
#include "core/internal/sdpa_plan.h"
#include "core/internal/softmax.h"
#include "core/status_macros.h"

namespace attention {
namespace {

using internal::kMaskedScore;

absl::Status CheckView(const View4& v, const char* field, const char* dims) {
  for (int d = 0; d < 4; ++d) {
    if (v.dims[d] < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": expected ", dims, " with every dimension >= 1, got ", ShapeString(v.dims)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDim(const char* field, const char* what, int64_t expected, int64_t actual) {
  if (expected == actual) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", what, " expected ", expected, ", got ", actual));
}

}  // namespace

absl::Status ValidateSdpa(const View4& query, const View4& key, const View4& value,
                          const MaskSpec& mask) {
  ATTN_RETURN_IF_ERROR(CheckView(query, "query", "[B, Hq, Lq, Dk]"));
  ATTN_RETURN_IF_ERROR(CheckView(key, "key", "[B, Hkv, Lk, Dk]"));
  ATTN_RETURN_IF_ERROR(CheckView(value, "value", "[B, Hkv, Lk, Dv]"));
  const int64_t b = query.dims[0], hq = query.dims[1], lq = query.dims[2], dk = query.dims[3];
  const int64_t hkv = key.dims[1], lk = key.dims[2];
  ATTN_RETURN_IF_ERROR(CheckDim("key", "dim 0 (B, as query)", b, key.dims[0]));
  ATTN_RETURN_IF_ERROR(CheckDim("key", "dim 3 (Dk, as query)", dk, key.dims[3]));
  ATTN_RETURN_IF_ERROR(CheckDim("value", "dim 0 (B, as query)", b, value.dims[0]));
  ATTN_RETURN_IF_ERROR(CheckDim("value", "dim 1 (Hkv, as key)", hkv, value.dims[1]));
  ATTN_RETURN_IF_ERROR(CheckDim("value", "dim 2 (Lk, as key)", lk, value.dims[2]));
  if (hq % hkv != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("key: dim 1 (Hkv) must divide the query's Hq = ", hq, ", got Hkv = ", hkv));
  }
  if (!mask.key_lengths.empty()) {
    if (static_cast<int64_t>(mask.key_lengths.size()) != b) {
      return absl::InvalidArgumentError(absl::StrCat("mask.key_lengths: expected ", b,
                                                     " entries (one per batch row), got ",
                                                     mask.key_lengths.size()));
    }
    for (size_t i = 0; i < mask.key_lengths.size(); ++i) {
      if (mask.key_lengths[i] < 1 || mask.key_lengths[i] > lk) {
        return absl::InvalidArgumentError(absl::StrCat("mask.key_lengths[", i, "]: expected 1..",
                                                       lk, " (Lk), got ", mask.key_lengths[i]));
      }
    }
  }
  if (mask.sliding_window < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mask.sliding_window: expected >= 0 (0: no window), got ", mask.sliding_window));
  }
  if (mask.has_keep() || !mask.keep_shape.empty()) {
    const int64_t target[4] = {b, hq, lq, lk};
    const auto& shape = mask.keep_shape;
    if (shape.size() > 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mask.keep: expected rank <= 4 (broadcastable to [B, Hq, Lq, Lk] = ", ShapeString(target),
          "), got ", ShapeString(shape)));
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      const int64_t want = target[4 - shape.size() + d];
      if (shape[d] != 1 && shape[d] != want) {
        return absl::InvalidArgumentError(absl::StrCat(
            "mask.keep: shape ", ShapeString(shape), " does not broadcast to [B, Hq, Lq, Lk] = ",
            ShapeString(target), " (dim ", d, " must be 1 or ", want, ")"));
      }
    }
    const int64_t n = NumElements(shape);
    if (n != static_cast<int64_t>(mask.keep.size())) {
      return absl::InvalidArgumentError(absl::StrCat("mask.keep: shape ", ShapeString(shape),
                                                     " needs ", n, " elements, got ",
                                                     mask.keep.size()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSdpaTerms(float logit_softcap, int64_t hq_sinks, const float* sinks,
                               int64_t hq) {
  if (!(std::isfinite(logit_softcap) && logit_softcap >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit_softcap: expected a finite value >= 0 (0: no soft-cap), got ", logit_softcap));
  }
  if (hq_sinks == 0) return absl::OkStatus();
  if (hq_sinks != hq) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sinks: expected [Hq] = [", hq, "] (one logit per query head), got ", hq_sinks));
  }
  for (int64_t h = 0; h < hq; ++h) {
    if (!std::isfinite(sinks[h])) {
      return absl::InvalidArgumentError(
          absl::StrCat("sinks[", h, "]: expected a finite logit, got ", sinks[h]));
    }
  }
  return absl::OkStatus();
}

namespace {

// A keep mask and a window together: the window folded into a copy of the
// keep mask, broadcast over [Lq, Lk] (its B and Hq dims as they were), so
// that the kernels see one keep mask and a fully masked row still averages
// all Lk values. Without both, `mask` itself.
struct FoldedMask {
  MaskSpec folded;
  const MaskSpec* mask;

  FoldedMask(const MaskSpec& m, int64_t lq, int64_t lk) : mask(&m) {
    if (m.sliding_window == 0 || !m.has_keep()) return;
    const internal::KeepIndex keep = internal::MakeKeepIndex(m);
    const int64_t rank = static_cast<int64_t>(m.keep_shape.size());
    const int64_t kb = rank >= 4 ? m.keep_shape[rank - 4] : 1;
    const int64_t kh = rank >= 3 ? m.keep_shape[rank - 3] : 1;
    folded.causal = m.causal;
    folded.key_lengths = m.key_lengths;
    folded.keep_shape = {kb, kh, lq, lk};
    folded.keep.resize(static_cast<size_t>(kb * kh * lq * lk));
    for (int64_t b = 0; b < kb; ++b) {
      for (int64_t h = 0; h < kh; ++h) {
        for (int64_t i = 0; i < lq; ++i) {
          const uint8_t* src = keep.Row(b, h, i);
          uint8_t* dst = folded.keep.data() + ((b * kh + h) * lq + i) * lk;
          const int64_t position = i + lk - lq;
          for (int64_t j = 0; j < lk; ++j) {
            dst[j] = src[j * keep.strides[3]] != 0 && j <= position &&
                     j > position - m.sliding_window;
          }
        }
      }
    }
    mask = &folded;
  }
};

internal::SdpaPlan PlanFor(const View4& q, const View4& k, const View4& v, bool weights) {
  internal::SdpaProblem problem;
  problem.batch = q.dims[0], problem.hq = q.dims[1], problem.hkv = k.dims[1];
  problem.lq = q.dims[2], problem.lk = k.dims[2], problem.dk = q.dims[3], problem.dv = v.dims[3];
  problem.weights = weights;
  problem.threads = omp_get_max_threads();
  return internal::PlanSdpa(problem);
}

float ResolvedScale(float scale, int64_t dk) {
  return scale == 0.0f ? 1.0f / std::sqrt(static_cast<float>(dk)) : scale;
}

// Every job on the few-rows loops (decode): no GEMM, so bf16 operands need
// no native bf16 matmul.
bool FewRowsOnly(const internal::SdpaPlan& plan) {
  return plan.path == internal::SdpaPath::kFewRows &&
         plan.tail_path == internal::SdpaPath::kFewRows;
}

// Runs a validated call's jobs on up to plan.team threads.
absl::Status RunCall(const internal::SdpaCall& call) {
  const int64_t slices = call.q.dims[0] * call.k.dims[1], dv = call.v.dims[3];
  const bool skips = internal::SkipsKeys(*call.mask);
  // Per kv slice: SkippedNonFiniteValues' 2·Dv entries.
  std::vector<int64_t> skipped_non_finite(skips ? static_cast<size_t>(slices * 2 * dv) : 0);

  std::mutex error_mu;
  absl::Status error;
  const CancellationCheck* cancel = CurrentCancellation();
  // Never wake more threads than there are jobs (a tiny call runs alone).
#pragma omp parallel num_threads(call.plan.team)
  {
    internal::SdpaScratch scratch(call.plan);
    if (skips) {
#pragma omp for schedule(static)
      for (int64_t bg = 0; bg < slices; ++bg) {
        internal::SkippedNonFiniteValues(call, bg, skipped_non_finite.data() + bg * 2 * dv);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < call.plan.jobs; ++job) {
      absl::Status status = PollCancellation(cancel);  // between tiles
      if (status.ok()) {
        status = internal::RunSdpaJob(
            call, job, scratch,
            skips ? skipped_non_finite.data() + job / call.plan.tiles * 2 * dv : nullptr);
      }
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.ok()) error = std::move(status);
      }
    }
  }
  return error;
}

// Rows of a view, in parallel where there are many elements: fn(dst_row,
// src_row) for each of its B·H·L rows, dst dense.
template <typename Src, typename Dst, typename Fn>
std::vector<Dst> DenseRows(const Src& v, Fn fn) {
  const int64_t d3 = v.dims[3];
  const int64_t rows = v.dims[0] * v.dims[1] * v.dims[2];
  std::vector<Dst> out(static_cast<size_t>(rows * d3));
  // On all threads: at decode this pass over K and V is as long as the
  // attention itself.
#pragma omp parallel for schedule(static) if (rows * d3 > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t k = r % v.dims[2], j = (r / v.dims[2]) % v.dims[1], i = r / v.dims[2] / v.dims[1];
    fn(v.Row(i, j, k), out.data() + r * d3, d3);
  }
  return out;
}

// A dense copy of a view's elements, rounded to bfloat16 (in float32).
std::vector<float> RoundedCopy(const View4& v) {
  return DenseRows<View4, float>(v, [](const float* src, float* dst, int64_t n) {
    std::copy_n(src, n, dst);
    RoundToBfloat16(dst, n);
  });
}

// A dense bfloat16 copy of a view (round to nearest even).
std::vector<uint16_t> Bf16Copy(const View4& v) {
  return DenseRows<View4, uint16_t>(
      v, [](const float* src, uint16_t* dst, int64_t n) { FloatToBfloat16(src, dst, n); });
}

// A dense float32 copy of a bf16 view (exact).
std::vector<float> WidenedCopy(const Bf16View4& v) {
  return DenseRows<Bf16View4, float>(
      v, [](const uint16_t* src, float* dst, int64_t n) { Bfloat16ToFloat(src, dst, n); });
}

View4 DenseOf(const std::vector<float>& data, const int64_t* dims) {
  return View4::Dense(data.data(), dims[0], dims[1], dims[2], dims[3]);
}

Bf16View4 DenseOf(const std::vector<uint16_t>& data, const int64_t* dims) {
  return Bf16View4::Dense(data.data(), dims[0], dims[1], dims[2], dims[3]);
}

absl::Status CheckSdpaComputeDType(DType compute) {
  if (compute == DType::kFloat32 || compute == DType::kBfloat16) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("compute_dtype: expected FLOAT32 or BFLOAT16, got ", DTypeName(compute)));
}

// fn (Sdpa or SdpaReference) on copies of q, k, v rounded to bfloat16: the
// bf16 computation's operands, with float32 products.
template <typename Fn>
absl::Status RoundedSdpa(Fn fn, const View4& q, const View4& k, const View4& v,
                         const MaskSpec& mask, float scale, const MutView4& out, float* weights,
                         const SdpaTerms& terms) {
  const std::vector<float> qr = RoundedCopy(q), kr = RoundedCopy(k), vr = RoundedCopy(v);
  return fn(DenseOf(qr, q.dims), DenseOf(kr, k.dims), DenseOf(vr, v.dims), mask, scale, out,
            weights, terms);
}

// The float32 kernel; with round_p (operands already rounded to bf16, no
// native bf16 matmul) P is rounded to bf16 before P·V as well.
absl::Status SdpaF32(const View4& q, const View4& k, const View4& v, const MaskSpec& mask,
                     float scale, const MutView4& out, float* weights, bool round_p,
                     const SdpaTerms& terms) {
  ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
  ATTN_RETURN_IF_ERROR(
      ValidateSdpaTerms(terms.logit_softcap, terms.sinks != nullptr ? q.dims[1] : 0, terms.sinks,
                        q.dims[1]));
  const FoldedMask folded(mask, q.dims[2], k.dims[2]);
  internal::SdpaCall call(q, k, v, out, weights, *folded.mask, ResolvedScale(scale, q.dims[3]),
                          PlanFor(q, k, v, weights != nullptr));
  call.round_p = round_p;
  call.terms = terms;
  return RunCall(call);
}

}  // namespace

absl::Status Sdpa(const View4& q, const View4& k, const View4& v, const MaskSpec& mask, float scale,
                  const MutView4& out, float* weights, const SdpaTerms& terms) {
  return SdpaF32(q, k, v, mask, scale, out, weights, /*round_p=*/false, terms);
}

absl::Status SdpaBf16(const Bf16View4& q, const Bf16View4& k, const Bf16View4& v,
                      const MaskSpec& mask, float scale, const MutView4& out, float* weights,
                      const SdpaTerms& terms) {
  const View4 qs = q.Shape(), ks = k.Shape(), vs = v.Shape();
  ATTN_RETURN_IF_ERROR(ValidateSdpa(qs, ks, vs, mask));
  ATTN_RETURN_IF_ERROR(
      ValidateSdpaTerms(terms.logit_softcap, terms.sinks != nullptr ? qs.dims[1] : 0, terms.sinks,
                        qs.dims[1]));
  if (q.data == nullptr || k.data == nullptr || v.data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(q.data == nullptr   ? "query"
                                                   : k.data == nullptr ? "key"
                                                                       : "value",
                                                   ": no data"));
  }
  const internal::SdpaPlan plan = PlanFor(qs, ks, vs, weights != nullptr);
  if (!internal::Bf16MatmulPreferred() && !FewRowsOnly(plan)) {
    // No bf16 GEMM here, or a slower one than sgemm: the float32 one on the
    // widened (exact) operands.
    const std::vector<float> qw = WidenedCopy(q), kw = WidenedCopy(k), vw = WidenedCopy(v);
    return SdpaF32(DenseOf(qw, q.dims), DenseOf(kw, k.dims), DenseOf(vw, v.dims), mask, scale, out,
                   weights, /*round_p=*/true, terms);
  }
  const FoldedMask folded(mask, qs.dims[2], ks.dims[2]);
  internal::SdpaCall call(qs, ks, vs, out, weights, *folded.mask, ResolvedScale(scale, q.dims[3]),
                          plan, internal::Bf16Operands{q.data, k.data, v.data});
  call.terms = terms;
  return RunCall(call);
}

absl::Status Sdpa(const View4& q, const View4& k, const View4& v, const MaskSpec& mask, float scale,
                  const MutView4& out, float* weights, DType compute, const SdpaTerms& terms) {
  ATTN_RETURN_IF_ERROR(CheckSdpaComputeDType(compute));
  if (compute == DType::kFloat32) return Sdpa(q, k, v, mask, scale, out, weights, terms);
  ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
  if (internal::Bf16MatmulPreferred() || FewRowsOnly(PlanFor(q, k, v, weights != nullptr))) {
    const std::vector<uint16_t> q16 = Bf16Copy(q), k16 = Bf16Copy(k), v16 = Bf16Copy(v);
    return SdpaBf16(DenseOf(q16, q.dims), DenseOf(k16, k.dims), DenseOf(v16, v.dims), mask, scale,
                    out, weights, terms);
  }
  auto rounded_p = [](const View4& qr, const View4& kr, const View4& vr, const MaskSpec& m, float s,
                      const MutView4& o, float* w, const SdpaTerms& t) {
    return SdpaF32(qr, kr, vr, m, s, o, w, /*round_p=*/true, t);
  };
  return RoundedSdpa(rounded_p, q, k, v, mask, scale, out, weights, terms);
}

absl::Status SdpaReference(const View4& q, const View4& k, const View4& v, const MaskSpec& mask,
                           float scale, const MutView4& out, float* weights,
                           const SdpaTerms& terms) {
  ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
  ATTN_RETURN_IF_ERROR(
      ValidateSdpaTerms(terms.logit_softcap, terms.sinks != nullptr ? q.dims[1] : 0, terms.sinks,
                        q.dims[1]));
  const double cap = terms.logit_softcap;
  const int64_t batch = q.dims[0], hq = q.dims[1], lq = q.dims[2], dk = q.dims[3];
  const int64_t hkv = k.dims[1], lk = k.dims[2], dv = v.dims[3];
  const int64_t group = hq / hkv;
  const double s = scale == 0.0f ? 1.0 / std::sqrt(static_cast<double>(dk)) : scale;
  const internal::KeepIndex keep = internal::MakeKeepIndex(mask);
  std::vector<double> p(lk), o(dv);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < lq; ++i) {
        const float* qi = q.Row(b, h, i);
        // The window's lower edge as a mask, separately from VisibleRange
        // (which also says that a row sees no key): a second statement.
        const int64_t position = i + lk - lq;
        const int64_t visible = internal::VisibleRange(mask, b, i, lq, lk).end;
        const int64_t first =
            mask.sliding_window > 0 ? position - mask.sliding_window + 1 : int64_t{0};
        const uint8_t* keep_row = keep.Row(b, h, i);
        const bool sink = terms.sinks != nullptr;
        double max = sink ? static_cast<double>(terms.sinks[h]) : -1e300;
        bool any_kept = false;
        for (int64_t j = 0; j < lk; ++j) {
          const float* kj = k.Row(b, g, j);
          double dot = 0;
          for (int64_t d = 0; d < dk; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          const bool kept = j >= first && j < visible &&
                            (keep_row == nullptr || keep_row[j * keep.strides[3]]);
          any_kept |= kept;
          double score = dot * s;
          if (cap > 0) score = cap * std::tanh(score / cap);
          p[j] = kept ? score : static_cast<double>(kMaskedScore);
          max = std::max(max, p[j]);
        }
        double sum = sink ? std::exp(terms.sinks[h] - max) : 0.0;
        for (int64_t j = 0; j < lk; ++j) sum += (p[j] = std::exp(p[j] - max));
        if (terms.lse != nullptr) {
          terms.lse[(b * hq + h) * lq + i] =
              any_kept || sink ? static_cast<float>(max + std::log(sum)) : -INFINITY;
        }
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < lk; ++j) {
          p[j] /= sum;
          const float* vj = v.Row(b, g, j);
          for (int64_t d = 0; d < dv; ++d) o[d] += p[j] * vj[d];
        }
        float* oi = out.Row(b, h, i);
        for (int64_t d = 0; d < dv; ++d) oi[d] = static_cast<float>(o[d]);
        if (weights != nullptr) {
          float* wi = weights + ((b * hq + h) * lq + i) * lk;
          for (int64_t j = 0; j < lk; ++j) wi[j] = static_cast<float>(p[j]);
        }
      }
    }
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckRank4(const Tensor& t, const char* field, const char* dims) {
  if (t.rank() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected rank 4 ", dims, ", got ", ShapeString(t.shape())));
  }
  return absl::OkStatus();
}

// Attend's shared part: checks, the result's tensors, then Sdpa in the
// options' compute dtype (the reference on rounded copies for bf16).
absl::StatusOr<AttentionResult> AttendWith(bool reference, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const MaskSpec& mask,
                                           const SdpaOptions& options) {
  ATTN_RETURN_IF_ERROR(CheckRank4(q, "query", "[B, Hq, Lq, Dk]"));
  ATTN_RETURN_IF_ERROR(CheckRank4(k, "key", "[B, Hkv, Lk, Dk]"));
  ATTN_RETURN_IF_ERROR(CheckRank4(v, "value", "[B, Hkv, Lk, Dv]"));
  const View4 qv = View4::Of(q), kv = View4::Of(k), vv = View4::Of(v);
  ATTN_RETURN_IF_ERROR(ValidateSdpa(qv, kv, vv, mask));
  ATTN_RETURN_IF_ERROR(CheckSdpaComputeDType(options.compute_dtype));
  ATTN_RETURN_IF_ERROR(ValidateSdpaTerms(options.logit_softcap,
                                         static_cast<int64_t>(options.sinks.size()),
                                         options.sinks.data(), q.dim(1)));
  AttentionResult result;
  result.output = Tensor({q.dim(0), q.dim(1), q.dim(2), v.dim(3)});
  if (options.return_weights) result.weights = Tensor({q.dim(0), q.dim(1), q.dim(2), k.dim(2)});
  if (options.return_lse) result.lse = Tensor({q.dim(0), q.dim(1), q.dim(2)});
  const MutView4 out = MutView4::Of(result.output);
  float* weights = options.return_weights ? result.weights.data() : nullptr;
  SdpaTerms terms;
  terms.logit_softcap = options.logit_softcap;
  terms.sinks = options.sinks.empty() ? nullptr : options.sinks.data();
  terms.lse = options.return_lse ? result.lse.data() : nullptr;
  if (!reference) {
    ATTN_RETURN_IF_ERROR(
        Sdpa(qv, kv, vv, mask, options.scale, out, weights, options.compute_dtype, terms));
  } else if (options.compute_dtype == DType::kBfloat16) {
    ATTN_RETURN_IF_ERROR(
        RoundedSdpa(SdpaReference, qv, kv, vv, mask, options.scale, out, weights, terms));
  } else {
    ATTN_RETURN_IF_ERROR(SdpaReference(qv, kv, vv, mask, options.scale, out, weights, terms));
  }
  return result;
}

}  // namespace

absl::StatusOr<AttentionResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                       const MaskSpec& mask, const SdpaOptions& options) {
  return AttendWith(/*reference=*/false, query, key, value, mask, options);
}

absl::StatusOr<AttentionResult> AttendReference(const Tensor& query, const Tensor& key,
                                                const Tensor& value, const MaskSpec& mask,
                                                const SdpaOptions& options) {
  return AttendWith(/*reference=*/true, query, key, value, mask, options);
}

const char* VariantName(int64_t hq, int64_t hkv) {
  if (hkv == hq) return "mha";
  if (hkv == 1) return "mqa";
  return "gqa";
}

}  // namespace attention
