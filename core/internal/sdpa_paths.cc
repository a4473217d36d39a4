#include "core/internal/sdpa_paths.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/internal/gemm.h"
#include "core/internal/row_attention.h"
#include "core/internal/softmax.h"
#include "core/status_macros.h"

namespace attention::internal {
namespace {

// Job index → batch row b, kv head g, query rows [i0, i1) of its G heads,
// and [kmin, kmax): keys outside the ones any row of the job sees are
// masked for all of them and get exactly zero weight, unless a row is fully
// masked (then it averages all Lk values), so only keys [kmin, kmax) are
// computed.
struct Job {
  int64_t b, g, i0, i1, kmin, kmax;

  int64_t rows() const { return i1 - i0; }
  int64_t keys() const { return kmax - kmin; }
};

Job MakeJob(const SdpaCall& c, int64_t index) {
  const SdpaPlan& plan = c.plan;
  const int64_t lq = c.q.dims[2], lk = c.k.dims[2], hkv = c.k.dims[1];
  Job job;
  job.b = index / (hkv * plan.tiles);
  job.g = index / plan.tiles % hkv;
  job.i0 = index % plan.tiles * plan.query_tile;
  job.i1 = std::min(lq, job.i0 + plan.query_tile);
  job.kmin = 0;
  job.kmax = lk;
  if (!c.mask->has_keep()) {
    // Both ends of a row's range grow with i, and the rows that see no key
    // are a prefix (causal, Lq > Lk) and a suffix (a window past the key
    // length): checking the job's first and last rows is enough.
    const KeyRange first = VisibleRange(*c.mask, job.b, job.i0, lq, lk);
    const KeyRange last = VisibleRange(*c.mask, job.b, job.i1 - 1, lq, lk);
    if (first.end >= 1 && last.end >= 1) {
      job.kmin = first.first;
      job.kmax = last.end;
    }
  }
  return job;
}

// Weights of keys outside [kmin, kmax) of a normalised weights row: 0, as
// the reference's exp(-1e9 - max), or NaN when the row is NaN (a NaN sum
// made every weight NaN, row[kmin] among them).
void FillSkippedWeights(float* row, int64_t kmin, int64_t kmax, int64_t lk) {
  const float zero = 0.0f * row[kmin];
  std::fill(row, row + kmin, zero);
  std::fill(row + kmax, row + lk, zero);
}

// Keys [k0, k0 + n) of the job's kv slice transposed ([Dk, n]), and their
// values ([n, Dv]), as GEMM operands in the call's dtype.
Mat KeysT(const SdpaCall& c, const Job& job, int64_t k0, int64_t n) {
  const int64_t dk = c.q.dims[3], ld = c.k.strides[2];
  if (c.is_bf16()) return Mat::Transposed(c.K16(job.b, job.g, k0), dk, n, ld);
  return Mat::Transposed(c.k.Row(job.b, job.g, k0), dk, n, ld);
}

Mat Values(const SdpaCall& c, const Job& job, int64_t k0, int64_t n) {
  const int64_t dv = c.v.dims[3], ld = c.v.strides[2];
  if (c.is_bf16()) return Mat::RowMajor(c.V16(job.b, job.g, k0), n, dv, ld);
  return Mat::RowMajor(c.v.Row(job.b, job.g, k0), n, dv, ld);
}

// `rows` query rows of head h from row i, leading dimension ld (elements).
Mat QueryRows(const SdpaCall& c, int64_t b, int64_t h, int64_t i, int64_t rows, int64_t ld) {
  const int64_t dk = c.q.dims[3];
  if (c.is_bf16()) return Mat::RowMajor(c.Q16(b, h, i), rows, dk, ld);
  return Mat::RowMajor(c.q.Row(b, h, i), rows, dk, ld);
}

// Probability rows p[r · ld + j] (r < m, j < n) as the A of P·V: in place
// in float32; for a bf16 call rounded to bf16 into scratch, as a bf16
// GEMM's source (with round_p, rounded in float32).
Mat ProbRows(const SdpaCall& c, const float* p, int64_t m, int64_t n, int64_t ld,
             SdpaScratch& scratch) {
  if (c.round_p) {
    if (scratch.p_rounded.size() < static_cast<size_t>(m * n)) scratch.p_rounded.resize(m * n);
    for (int64_t r = 0; r < m; ++r) {
      float* dst = scratch.p_rounded.data() + r * n;
      std::copy_n(p + r * ld, n, dst);
      RoundToBfloat16(dst, n);
    }
    return Mat::RowMajor(scratch.p_rounded.data(), m, n, n);
  }
  if (!c.is_bf16()) return Mat::RowMajor(p, m, n, ld);
  if (scratch.p16.size() < static_cast<size_t>(m * n)) scratch.p16.resize(m * n);
  for (int64_t r = 0; r < m; ++r) FloatToBfloat16(p + r * ld, scratch.p16.data() + r * n, n);
  return Mat::RowMajor(scratch.p16.data(), m, n, n);
}

// Decode-like: each key and value row is read once for the job's few rows.
absl::Status RunFewRows(const SdpaCall& c, const Job& job, SdpaScratch& scratch) {
  const int64_t hq = c.q.dims[1], lq = c.q.dims[2], dk = c.q.dims[3];
  const int64_t lk = c.k.dims[2], dv = c.v.dims[3], group = c.plan.group;
  const int64_t block = FewRowsKeyBlock(group * job.rows(), dk, dv);
  const float* q_rows[kMaxFewRows];
  float* s_rows[kMaxFewRows];
  float* o_rows[kMaxFewRows];
  const uint8_t* keep_rows[kMaxFewRows];
  int64_t visible[kMaxFewRows], first[kMaxFewRows];
  float sinks[kMaxFewRows], lse[kMaxFewRows];
  int64_t nr = 0;
  if (c.is_bf16() && scratch.q_wide.size() < static_cast<size_t>(group * job.rows() * dk)) {
    scratch.q_wide.resize(group * job.rows() * dk);
  }
  for (int64_t hl = 0; hl < group; ++hl) {
    const int64_t h = job.g * group + hl;
    for (int64_t i = job.i0; i < job.i1; ++i, ++nr) {
      if (c.is_bf16()) {
        float* wide = scratch.q_wide.data() + nr * dk;
        Bfloat16ToFloat(c.Q16(job.b, h, i), wide, dk);
        q_rows[nr] = wide;
      } else {
        q_rows[nr] = c.q.Row(job.b, h, i);
      }
      o_rows[nr] = c.out.Row(job.b, h, i);
      s_rows[nr] = c.weights != nullptr ? c.weights + ((job.b * hq + h) * lq + i) * lk
                                        : scratch.scores.data() + nr * block;
      keep_rows[nr] = c.keep.Row(job.b, h, i);
      const KeyRange range = VisibleRange(*c.mask, job.b, i, lq, lk);
      visible[nr] = range.end;
      first[nr] = range.first;
      sinks[nr] = c.Sink(h);
    }
  }
  FewRowsTerms terms;
  terms.first = first;
  terms.kmin = job.kmin;
  terms.sink = c.terms.sinks != nullptr ? sinks : nullptr;
  terms.softcap = c.terms.logit_softcap;
  terms.lse = c.terms.lse != nullptr ? lse : nullptr;
  const View4& k = c.k;
  const View4& v = c.v;
  const bool bf16 = c.is_bf16();
  AttendFewRows(
      nr, q_rows, dk, dv, job.kmax, visible, c.keep.data != nullptr ? keep_rows : nullptr,
      c.keep.strides[3], c.scale,
      [&](int64_t j) {
        const void* row = bf16 ? static_cast<const void*>(c.K16(job.b, job.g, j))
                               : static_cast<const void*>(k.Row(job.b, job.g, j));
        return RowRun{row, k.strides[2], lk - j};
      },
      [&](int64_t j) {
        const void* row = bf16 ? static_cast<const void*>(c.V16(job.b, job.g, j))
                               : static_cast<const void*>(v.Row(job.b, job.g, j));
        return RowRun{row, v.strides[2], lk - j};
      },
      s_rows, scratch.acc.data(), o_rows, c.weights != nullptr, bf16 ? KvElem::kBf16 : KvElem::kF32,
      c.rounds_p(), terms);
  if (c.weights != nullptr) {
    for (int64_t r = 0; r < nr; ++r) FillSkippedWeights(s_rows[r], job.kmin, job.kmax, lk);
  }
  if (c.terms.lse != nullptr) {
    for (int64_t hl = 0, r = 0; hl < group; ++hl) {
      for (int64_t i = job.i0; i < job.i1; ++i, ++r) {
        c.terms.lse[(job.b * hq + job.g * group + hl) * lq + i] = lse[r];
      }
    }
  }
  return absl::OkStatus();
}

// The G heads' rows of a job as one matrix of M = G·rows rows (head-major):
// in place when uniformly strided, else packed into scratch, so each GEMM
// sees all rows that share a K/V tile.
struct GroupRows {
  const SdpaCall& c;
  const Job& job;
  int64_t rows, m;
  Mat q;

  GroupRows(const SdpaCall& call, const Job& j, SdpaScratch& scratch)
      : c(call), job(j), rows(j.rows()), m(call.plan.group * j.rows()) {
    const int64_t group = c.plan.group, dk = c.q.dims[3], lq = c.q.dims[2];
    q = QueryRows(c, job.b, job.g * group, job.i0, m, c.q.strides[2]);
    if (group == 1) return;
    if (c.q_merged != 0 && c.o_merged != 0 && rows == lq) {
      q.row_stride = c.q_merged;
      return;
    }
    if (c.is_bf16()) {
      if (scratch.q16_pack.size() < static_cast<size_t>(m * dk)) scratch.q16_pack.resize(m * dk);
      for (int64_t row = 0; row < m; ++row) {
        std::copy_n(c.Q16(job.b, Head(row), job.i0 + row % rows), dk,
                    scratch.q16_pack.data() + row * dk);
      }
      q = Mat::RowMajor(scratch.q16_pack.data(), m, dk, dk);
      return;
    }
    for (int64_t row = 0; row < m; ++row) {
      std::copy_n(c.q.Row(job.b, Head(row), job.i0 + row % rows), dk,
                  scratch.q_pack.data() + row * dk);
    }
    q = Mat::RowMajor(scratch.q_pack.data(), m, dk, dk);
  }

  int64_t Head(int64_t row) const { return job.g * c.plan.group + row / rows; }
  KeyRange Range(int64_t row) const {
    return VisibleRange(*c.mask, job.b, job.i0 + row % rows, c.q.dims[2], c.k.dims[2]);
  }
  float Sink(int64_t row) const { return c.Sink(Head(row)); }
  void StoreLse(int64_t row, float max, float sum) const {
    c.StoreLse(job.b, Head(row), job.i0 + row % rows, max, sum);
  }
  // OnlineRowTile over keys [k0, k0 + n) of row `row` (s its scores).
  float RowTile(int64_t row, float* s, int64_t k0, int64_t n, float& max, float& sum) const {
    const KeyRange range = Range(row);
    return OnlineRowTile(s, k0, n, c.scale, c.terms.logit_softcap, range.first, range.end,
                         Keep(row), c.keep.strides[3], max, sum);
  }
  const uint8_t* Keep(int64_t row) const {
    return c.keep.Row(job.b, Head(row), job.i0 + row % rows);
  }

  // Divides the unnormalised P·V rows (acc, ld Dv) by their sums into out.
  void WriteOut(const float* acc, const float* sums) const {
    const int64_t dv = c.v.dims[3];
    for (int64_t row = 0; row < m; ++row) {
      float* o = c.out.Row(job.b, Head(row), job.i0 + row % rows);
      const float inv = 1.0f / sums[row];
      const float* a = acc + row * dv;
      for (int64_t x = 0; x < dv; ++x) o[x] = a[x] * inv;
    }
  }
};

// Whole score rows of all M rows at once, softmax without the division, P·V,
// then the division on the Dv-wide output rows.
absl::Status RunWholeRows(const SdpaCall& c, const Job& job, SdpaScratch& scratch) {
  const int64_t lk = c.k.dims[2], dv = c.v.dims[3];
  const GroupRows rows(c, job, scratch);
  float* s = scratch.scores.data();
  ATTN_RETURN_IF_ERROR(Matmul(rows.q, KeysT(c, job, job.kmin, job.keys()), s, lk));
  for (int64_t row = 0; row < rows.m; ++row) {
    float m, l;
    StartOnlineRow(rows.Sink(row), m, l);
    rows.RowTile(row, s + row * lk, job.kmin, job.keys(), m, l);  // one tile of whole rows
    scratch.row_sum[row] = l;
    rows.StoreLse(row, m, l);
  }
  ATTN_RETURN_IF_ERROR(Matmul(ProbRows(c, s, rows.m, job.keys(), lk, scratch),
                              Values(c, job, job.kmin, job.keys()), scratch.acc.data(), dv));
  rows.WriteOut(scratch.acc.data(), scratch.row_sum.data());
  return absl::OkStatus();
}

// Flash: key tiles of flash_keys with an online softmax, so only an M ×
// flash_keys score tile exists; every K/V tile is read once for all G heads
// sharing it.
absl::Status RunFlash(const SdpaCall& c, const Job& job, SdpaScratch& scratch) {
  const int64_t dv = c.v.dims[3], tile = c.plan.flash_keys;
  const GroupRows rows(c, job, scratch);
  float* s = scratch.scores.data();
  float* acc = scratch.acc.data();
  for (int64_t row = 0; row < rows.m; ++row) {
    StartOnlineRow(rows.Sink(row), scratch.row_max[row], scratch.row_sum[row]);
  }
  std::fill_n(acc, rows.m * dv, 0.0f);
  for (int64_t k0 = job.kmin; k0 < job.kmax; k0 += tile) {
    const int64_t n = std::min(tile, job.kmax - k0);
    ATTN_RETURN_IF_ERROR(Matmul(rows.q, KeysT(c, job, k0, n), s, tile));
    for (int64_t row = 0; row < rows.m; ++row) {
      const float alpha =
          rows.RowTile(row, s + row * tile, k0, n, scratch.row_max[row], scratch.row_sum[row]);
      if (alpha != 1.0f) {
        for (int64_t x = 0; x < dv; ++x) acc[row * dv + x] *= alpha;
      }
    }
    ATTN_RETURN_IF_ERROR(Matmul(ProbRows(c, s, rows.m, n, tile, scratch), Values(c, job, k0, n),
                                acc, dv, nullptr, /*accumulate=*/true));
  }
  rows.WriteOut(acc, scratch.row_sum.data());
  for (int64_t row = 0; row < rows.m; ++row) {
    rows.StoreLse(row, scratch.row_max[row], scratch.row_sum[row]);
  }
  return absl::OkStatus();
}

// Weights asked for: score rows are the caller's weights rows, head h (local
// index hl) and query i0 + t at s_base + hl·Lq·Lk + t·Lk.
absl::Status RunWeights(const SdpaCall& c, const Job& job, SdpaScratch& scratch) {
  const int64_t hq = c.q.dims[1], lq = c.q.dims[2];
  const int64_t lk = c.k.dims[2], group = c.plan.group;
  const int64_t rows = job.rows(), m = group * rows;
  float* s_base = c.weights + ((job.b * hq + job.g * group) * lq + job.i0) * lk;
  const int64_t s_head_stride = lq * lk;
  const int64_t kmin = job.kmin, n = job.keys();
  const Mat kt = KeysT(c, job, kmin, n);
  const Mat vm = Values(c, job, kmin, n);
  const bool merged = c.q_merged != 0 && c.o_merged != 0 && rows == lq;
  if (merged) {
    ATTN_RETURN_IF_ERROR(
        Matmul(QueryRows(c, job.b, job.g * group, job.i0, m, c.q_merged), kt, s_base + kmin, lk));
  } else {
    for (int64_t hl = 0; hl < group; ++hl) {
      ATTN_RETURN_IF_ERROR(
          Matmul(QueryRows(c, job.b, job.g * group + hl, job.i0, rows, c.q.strides[2]), kt,
                 s_base + hl * s_head_stride + kmin, lk));
    }
  }
  auto s_row = [&](int64_t row) { return s_base + row / rows * s_head_stride + row % rows * lk; };
  // bf16: P rounded before its division by the row's sum, as on the other
  // GEMM paths; the output and weights rows are divided after P·V.
  const bool bf16 = c.rounds_p();
  if (scratch.row_sum.size() < static_cast<size_t>(m)) scratch.row_sum.resize(m);
  for (int64_t row = 0; row < m; ++row) {
    const int64_t h = job.g * group + row / rows, i = job.i0 + row % rows;
    const KeyRange range = VisibleRange(*c.mask, job.b, i, lq, lk);
    float mx, l;
    StartOnlineRow(c.Sink(h), mx, l);
    OnlineRowTile(s_row(row) + kmin, kmin, n, c.scale, c.terms.logit_softcap, range.first,
                  range.end, c.keep.Row(job.b, h, i), c.keep.strides[3], mx, l);
    c.StoreLse(job.b, h, i, mx, l);
    scratch.row_sum[row] = l;
    if (!bf16) {
      float* w = s_row(row);
      const float inv = 1.0f / l;
      for (int64_t j = kmin; j < job.kmax; ++j) w[j] *= inv;
      FillSkippedWeights(w, kmin, job.kmax, lk);
    }
  }
  if (merged) {
    float* o0 = c.out.Row(job.b, job.g * group, job.i0);
    ATTN_RETURN_IF_ERROR(Matmul(ProbRows(c, s_base + kmin, m, n, lk, scratch), vm, o0, c.o_merged));
  } else {
    for (int64_t hl = 0; hl < group; ++hl) {
      float* o0 = c.out.Row(job.b, job.g * group + hl, job.i0);
      ATTN_RETURN_IF_ERROR(
          Matmul(ProbRows(c, s_base + hl * s_head_stride + kmin, rows, n, lk, scratch), vm, o0,
                 c.out.strides[2]));
    }
  }
  if (bf16) {
    const int64_t dv = c.v.dims[3];
    for (int64_t row = 0; row < m; ++row) {
      const float inv = 1.0f / scratch.row_sum[row];
      float* o = c.out.Row(job.b, job.g * group + row / rows, job.i0 + row % rows);
      for (int64_t x = 0; x < dv; ++x) o[x] *= inv;
      float* w = s_row(row);
      for (int64_t j = kmin; j < job.kmax; ++j) w[j] *= inv;
      FillSkippedWeights(w, kmin, job.kmax, lk);
    }
  }
  return absl::OkStatus();
}

}  // namespace

KeepIndex MakeKeepIndex(const MaskSpec& mask) {
  KeepIndex index;
  if (!mask.has_keep()) return index;
  index.data = mask.keep.data();
  const int rank = static_cast<int>(mask.keep_shape.size());
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    const int target = 4 - rank + d;
    index.strides[target] = mask.keep_shape[d] == 1 ? 0 : stride;
    stride *= mask.keep_shape[d];
  }
  return index;
}

KeyRange VisibleRange(const MaskSpec& mask, int64_t b, int64_t i, int64_t lq, int64_t lk) {
  const int64_t position = i + lk - lq;  // bottom-right aligned
  KeyRange range{0, lk};
  if (mask.causal || mask.sliding_window > 0) {
    range.end = std::min(range.end, std::max<int64_t>(0, position + 1));
  }
  if (!mask.key_lengths.empty()) range.end = std::min(range.end, mask.key_lengths[b]);
  if (mask.sliding_window > 0) range.first = std::max<int64_t>(0, position - mask.sliding_window + 1);
  if (range.first >= range.end) return KeyRange{0, 0};
  return range;
}

SdpaCall::SdpaCall(const View4& q_in, const View4& k_in, const View4& v_in, const MutView4& out_in,
                   float* weights_in, const MaskSpec& mask_in, float scale_in,
                   const SdpaPlan& plan_in, Bf16Operands bf16_in)
    : q(q_in),
      k(k_in),
      v(v_in),
      bf16(bf16_in),
      out(out_in),
      weights(weights_in),
      mask(&mask_in),
      keep(MakeKeepIndex(mask_in)),
      scale(scale_in),
      plan(plan_in) {
  const int64_t lq = q.dims[2];
  auto merged_stride = [&](const int64_t* strides) -> int64_t {
    if (lq == 1) return strides[1];
    if (plan.query_tile == lq && strides[1] == lq * strides[2]) return strides[2];
    return 0;
  };
  q_merged = merged_stride(q.strides);
  o_merged = merged_stride(out.strides);
}

SdpaScratch::SdpaScratch(const SdpaPlan& plan)
    : scores(static_cast<size_t>(plan.score_floats)),
      acc(static_cast<size_t>(plan.acc_floats)),
      row_max(static_cast<size_t>(plan.row_floats)),
      row_sum(static_cast<size_t>(plan.row_floats)),
      q_pack(static_cast<size_t>(plan.pack_floats)) {}

bool SkipsKeys(const MaskSpec& mask) {
  return !mask.has_keep() &&
         (mask.causal || !mask.key_lengths.empty() || mask.sliding_window > 0);
}

void SkippedNonFiniteValues(const SdpaCall& call, int64_t bg, int64_t* skipped) {
  const int64_t hkv = call.k.dims[1], lk = call.k.dims[2], dv = call.v.dims[3];
  int64_t* first_bad = skipped;
  int64_t* last = skipped + dv;
  std::fill_n(first_bad, dv, lk);
  std::fill_n(last, dv, -1);
  // With a window, jobs skip keys before their kmin: scan up to the largest
  // kmin (the last job's, or a job of rows that see no key, which computes
  // all keys) for the first non-finite row of each column.
  int64_t kmin_max = 0;
  for (int64_t t = 0; t < call.plan.tiles && call.mask->sliding_window > 0; ++t) {
    kmin_max = std::max(kmin_max, MakeJob(call, bg * call.plan.tiles + t).kmin);
  }
  for (int64_t j = 0; j < kmin_max; ++j) {
    for (int64_t x = 0; x < dv; ++x) {
      if (first_bad[x] < lk) continue;
      const bool bad = call.is_bf16()
                           ? (call.V16(bg / hkv, bg % hkv, j)[x] & 0x7f80) == 0x7f80
                           : !std::isfinite(call.v.Row(bg / hkv, bg % hkv, j)[x]);
      if (bad) first_bad[x] = j;
    }
  }
  // The first job of (b, g) computes the fewest keys past its own (visible
  // counts grow with the query index).
  const Job first = MakeJob(call, bg * call.plan.tiles);
  for (int64_t j = first.kmax; j < lk; ++j) {
    if (call.is_bf16()) {
      // Exponent all ones: ±Inf or NaN.
      const uint16_t* row = call.V16(bg / hkv, bg % hkv, j);
      bool bad = false;
      for (int64_t x = 0; x < dv; ++x) bad |= (row[x] & 0x7f80) == 0x7f80;
      if (!bad) continue;
      for (int64_t x = 0; x < dv; ++x) {
        if ((row[x] & 0x7f80) == 0x7f80) last[x] = j;
      }
      continue;
    }
    const float* row = call.v.Row(bg / hkv, bg % hkv, j);
    bool bad = false;
    for (int64_t x = 0; x < dv; ++x) bad |= !std::isfinite(row[x]);
    if (!bad) continue;  // the finite case: one compare per element
    for (int64_t x = 0; x < dv; ++x) {
      if (!std::isfinite(row[x])) last[x] = j;
    }
  }
}

absl::Status RunSdpaJob(const SdpaCall& call, int64_t index, SdpaScratch& scratch,
                        const int64_t* skipped_non_finite) {
  const Job job = MakeJob(call, index);
  absl::Status status;
  switch (call.plan.PathOf(job.rows())) {
    case SdpaPath::kFewRows:
      status = RunFewRows(call, job, scratch);
      break;
    case SdpaPath::kWholeRows:
      status = RunWholeRows(call, job, scratch);
      break;
    case SdpaPath::kFlash:
      status = RunFlash(call, job, scratch);
      break;
    case SdpaPath::kWeights:
      status = RunWeights(call, job, scratch);
      break;
  }
  if (status.ok() && skipped_non_finite != nullptr) {
    // The reference multiplies the skipped value rows by a weight of 0:
    // NaN in the columns where one of them is not finite.
    const int64_t group = call.plan.group, dv = call.v.dims[3];
    for (int64_t x = 0; x < dv; ++x) {
      if (skipped_non_finite[x] >= job.kmin && skipped_non_finite[dv + x] < job.kmax) continue;
      for (int64_t h = job.g * group; h < (job.g + 1) * group; ++h) {
        for (int64_t i = job.i0; i < job.i1; ++i) call.out.Row(job.b, h, i)[x] = NAN;
      }
    }
  }
  return status;
}

}  // namespace attention::internal
