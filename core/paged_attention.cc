#include "core/paged_attention.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cancellation.h"
#include "core/internal/gemm.h"
#include "core/internal/row_attention.h"
#include "core/internal/softmax.h"

namespace attention {

static_assert(kPagedRowTile <= internal::kMaxFewRows, "a decode tile must fit AttendFewRows");

namespace {

internal::KvElem ElemOf(DType dtype) {
  switch (dtype) {
    case DType::kBfloat16:
      return internal::KvElem::kBf16;
    case DType::kFloat16:
      return internal::KvElem::kF16;
    case DType::kInt8:
      return internal::KvElem::kI8;
    default:
      return internal::KvElem::kF32;
  }
}

// A run's first n rows of `width` as a float32 GEMM operand: in place for a
// float32 cache, else converted into `scratch` (n · width floats).
internal::Mat RunRows(const KvLayout& layout, const KvRun& run, int64_t n, int64_t width,
                      bool transposed, std::vector<float>& scratch) {
  using internal::Mat;
  const float* rows = static_cast<const float*>(run.data);
  int64_t ld = run.stride;
  if (layout.dtype != DType::kFloat32) {
    const int64_t es = DTypeSize(layout.dtype);
    for (int64_t j = 0; j < n; ++j) {
      RowToFloat(layout.dtype, static_cast<const uint8_t*>(run.data) + j * run.stride * es,
                 run.scales != nullptr ? run.scales[j * run.scale_stride] : 1.0f, width,
                 scratch.data() + j * width);
    }
    rows = scratch.data();
    ld = width;
  }
  return transposed ? Mat::Transposed(rows, width, n, ld) : Mat::RowMajor(rows, n, width, ld);
}

}  // namespace

absl::Status PagedSdpa(const View4& q, const PagedKvCache& cache, float scale, const MutView4& out,
                       DType compute, int64_t sliding_window, const SdpaTerms& terms) {
  const bool round_p = compute == DType::kBfloat16;
  using internal::Mat;
  const KvLayout& layout = cache.layout();
  const int64_t batch = q.dims[0], hq = q.dims[1], t_new = q.dims[2], dk = q.dims[3];
  const int64_t hkv = layout.heads, dv = layout.v_width, lk = cache.length();
  if (batch != cache.batch() || dk != layout.k_width || hq % hkv != 0 || t_new > lk ||
      out.dims[3] != dv) {
    return absl::InternalError(
        absl::StrCat("PagedSdpa: query ", ShapeString(q.dims), " does not match the cache"));
  }
  // The first key any row sees (the chunk's first token's window start).
  const int64_t first_seen =
      sliding_window > 0 ? std::max<int64_t>(0, lk - t_new + 1 - sliding_window) : 0;
  if (first_seen < cache.first_kept()) {
    return absl::InternalError(absl::StrCat("PagedSdpa: the chunk sees token ", first_seen,
                                            ", dropped from the cache (first kept: ",
                                            cache.first_kept(), ")"));
  }
  // The keys a tile's rows see in all, kmin .. kmax - 1, fit its score rows.
  const int64_t span = PagedScoreSpan(lk, t_new, sliding_window);
  // Rows of kv head g are its G query heads × T new tokens, head-major. A
  // tile is up to kPagedRowTile rows with one stride (so it can be a
  // GEMM operand): across heads when T == 1 or heads are consecutive [T, D]
  // blocks in both query and output, else within one head.
  const int64_t group = hq / hkv, rows = group * t_new;
  auto uniform = [&](const int64_t* st) -> int64_t {
    if (t_new == 1) return st[1];
    return st[1] == t_new * st[2] ? st[2] : 0;
  };
  const bool across_heads = uniform(q.strides) != 0 && uniform(out.strides) != 0;
  const int64_t qs = across_heads ? uniform(q.strides) : q.strides[2];
  const int64_t os = across_heads ? uniform(out.strides) : out.strides[2];
  const int64_t tiles_per_head = (t_new + kPagedRowTile - 1) / kPagedRowTile;
  const int64_t tiles =
      across_heads ? (rows + kPagedRowTile - 1) / kPagedRowTile : group * tiles_per_head;

  std::mutex error_mu;
  absl::Status error;
  const int64_t total_jobs = batch * hkv * tiles;
  const CancellationCheck* cancel = CurrentCancellation();
  const int team = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), total_jobs));
#pragma omp parallel num_threads(team)
  {
    const int64_t max_rows = std::min(rows, kPagedRowTile);
    std::vector<float> scores(static_cast<size_t>(max_rows * span));  // keys kmin .. kmax - 1
    std::vector<float> acc(static_cast<size_t>(max_rows * dv)), part(acc.size());
    // Rows of one run as float32, for the GEMM path of a narrow cache.
    std::vector<float> run_rows(
        layout.dtype == DType::kFloat32
            ? 0
            : static_cast<size_t>(cache.plan().chunk_tokens * std::max(dk, dv)));
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < batch * hkv * tiles; ++job) {
      const int64_t b = job / (hkv * tiles), g = job / tiles % hkv, tile = job % tiles;
      if (absl::Status c = PollCancellation(cancel); !c.ok()) {  // between tiles
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.ok()) error = c;
        continue;
      }
      // First row (head hl0, token t0) and row count of the tile.
      int64_t hl0, t0, nr;
      if (across_heads) {
        const int64_t r0 = tile * kPagedRowTile;
        hl0 = r0 / t_new;
        t0 = r0 % t_new;
        nr = std::min(kPagedRowTile, rows - r0);
      } else {
        hl0 = tile / tiles_per_head;
        t0 = tile % tiles_per_head * kPagedRowTile;
        nr = std::min(kPagedRowTile, t_new - t0);
      }
      const float* q0 = q.Row(b, g * group + hl0, t0);
      float* o0 = out.Row(b, g * group + hl0, t0);
      int64_t visible[kPagedRowTile], first[kPagedRowTile];
      float sinks[kPagedRowTile];
      int64_t kmax = 0, kmin = lk;
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t t = across_heads ? (hl0 * t_new + t0 + i) % t_new : t0 + i;
        const int64_t h = g * group + (across_heads ? (hl0 * t_new + t0 + i) / t_new : hl0);
        visible[i] = t + lk - t_new + 1;  // causal, bottom-right
        first[i] = sliding_window > 0 ? std::max<int64_t>(0, visible[i] - sliding_window) : 0;
        sinks[i] = terms.sinks != nullptr ? terms.sinks[h] : -INFINITY;
        kmax = std::max(kmax, visible[i]);
        kmin = std::min(kmin, first[i]);
      }
      absl::Status status;
      if (!internal::TakesFewRows(t_new, nr)) {
        // Many new tokens: a GEMM per run of cached rows for scores and for
        // values.
        for (int64_t j = kmin; j < kmax && status.ok();) {
          const KvRun run = cache.KRun(b, g, j);
          const int64_t n = std::min(run.count, kmax - j);
          status = internal::Matmul(Mat::RowMajor(q0, nr, dk, qs),
                                    RunRows(layout, run, n, dk, /*transposed=*/true, run_rows),
                                    scores.data() + (j - kmin), span);
          j += n;
        }
        // Softmax without the division (P·V's rows are divided after, as
        // Sdpa's whole-row path does, which rounds the same P for bf16).
        float sums[kPagedRowTile];
        for (int64_t i = 0; i < nr && status.ok(); ++i) {
          float* row = scores.data() + i * span;  // key kmin first
          float m;
          internal::StartOnlineRow(sinks[i], m, sums[i]);
          internal::OnlineRowTile(row, kmin, kmax - kmin, scale, terms.logit_softcap, first[i],
                                  visible[i], nullptr, 0, m, sums[i]);
          if (round_p) RoundToBfloat16(row, kmax - kmin);
        }
        std::fill(acc.begin(), acc.begin() + nr * dv, 0.0f);
        for (int64_t j = kmin; j < kmax && status.ok();) {
          const KvRun run = cache.VRun(b, g, j);
          const int64_t n = std::min(run.count, kmax - j);
          status = internal::Matmul(Mat::RowMajor(scores.data() + (j - kmin), nr, n, span),
                                    RunRows(layout, run, n, dv, /*transposed=*/false, run_rows),
                                    part.data(), dv);
          for (int64_t x = 0; x < nr * dv; ++x) acc[x] += part[x];
          j += n;
        }
        for (int64_t i = 0; i < nr && status.ok(); ++i) {
          const float inv = 1.0f / sums[i];
          for (int64_t x = 0; x < dv; ++x) o0[i * os + x] = acc[i * dv + x] * inv;
        }
      } else {
        // Decode: each cached key and value row is read once for all rows
        // (from L2 for each group of rows past kFewRows).
        const float* q_rows[kPagedRowTile];
        float* s_rows[kPagedRowTile];
        float* o_rows[kPagedRowTile];
        // Score rows of one key block, packed (rows Lk apart would fall in
        // the same cache sets).
        const int64_t s_stride = std::min(span, internal::FewRowsKeyBlock(nr, dk, dv));
        for (int64_t i = 0; i < nr; ++i) {
          q_rows[i] = q0 + i * qs;
          s_rows[i] = scores.data() + i * s_stride;
          o_rows[i] = o0 + i * os;
        }
        internal::AttendFewRows(
            nr, q_rows, dk, dv, kmax, visible, nullptr, 0, scale,
            [&](int64_t j) {
              const KvRun run = cache.KRun(b, g, j);
              return internal::RowRun{run.data, run.stride, run.count, run.scales,
                                      run.scale_stride};
            },
            [&](int64_t j) {
              const KvRun run = cache.VRun(b, g, j);
              return internal::RowRun{run.data, run.stride, run.count, run.scales,
                                      run.scale_stride};
            },
            s_rows, acc.data(), o_rows, /*weights_out=*/false, ElemOf(layout.dtype), round_p,
            internal::FewRowsTerms{first, kmin, terms.sinks != nullptr ? sinks : nullptr,
                                   terms.logit_softcap, nullptr});
      }
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.ok()) error = status;
      }
    }
  }
  return error;
}

}  // namespace attention
