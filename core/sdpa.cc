#include "core/sdpa.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include <mutex>
#include "core/cancellation.h"
#include "core/internal/gemm.h"
#include "core/internal/row_attention.h"
#include "core/internal/softmax.h"
#include "core/status_macros.h"

namespace attention {
namespace {

using internal::kMaskedScore;
using internal::Mat;

// The keep mask broadcast to [B, Hq, Lq, Lk]: element strides, 0 on
// broadcast dimensions.
struct KeepIndex {
  const uint8_t* data = nullptr;
  int64_t strides[4] = {0, 0, 0, 0};

  const uint8_t* Row(int64_t b, int64_t h, int64_t i) const {
    return data == nullptr ? nullptr : data + b * strides[0] + h * strides[1] + i * strides[2];
  }
};

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

// Number of leading keys query row i of batch row b may see through the
// causal and key-length masks.
int64_t VisibleKeys(const MaskSpec& mask, int64_t b, int64_t i, int64_t lq, int64_t lk) {
  int64_t visible = lk;
  if (mask.causal) visible = std::min(visible, std::max<int64_t>(0, i + lk - lq + 1));
  if (!mask.key_lengths.empty()) visible = std::min(visible, mask.key_lengths[b]);
  return visible;
}

absl::Status CheckView(const View4& v, const char* field, const char* dims) {
  for (int d = 0; d < 4; ++d) {
    if (v.dims[d] < 1) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", dims,
                                                     " with every dimension >= 1, got ",
                                                     ShapeString(v.dims)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDim(const char* field, const char* what, int64_t expected, int64_t actual) {
  if (expected == actual) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", what, " expected ", expected, ", got ", actual));
}

// Flash path tiles: about this many query rows (of the G heads sharing a kv
// head) against key tiles of kFlashKeys.
constexpr int64_t kFlashRows = 256;
constexpr int64_t kFlashKeys = 512;
// ... or fewer, so that a K tile stays within this many bytes (a core's L2
// holds it for the P·V that follows, where V shares K's rows as in MLA).
constexpr int64_t kFlashTileBytes = 384 << 10;

// Parallel job: batch row b, kv head g, query rows [i0, i1) of all G heads
// that share kv head g.
struct Job {
  int64_t b, g, i0, i1;
};

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
    return absl::InvalidArgumentError(absl::StrCat(
        "key: dim 1 (Hkv) must divide the query's Hq = ", hq, ", got Hkv = ", hkv));
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
  if (mask.has_keep() || !mask.keep_shape.empty()) {
    const int64_t target[4] = {b, hq, lq, lk};
    const auto& shape = mask.keep_shape;
    if (shape.size() > 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mask.keep: expected rank <= 4 (broadcastable to [B, Hq, Lq, Lk] = ",
          ShapeString(target), "), got ", ShapeString(shape)));
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      const int64_t want = target[4 - shape.size() + d];
      if (shape[d] != 1 && shape[d] != want) {
        return absl::InvalidArgumentError(
            absl::StrCat("mask.keep: shape ", ShapeString(shape),
                         " does not broadcast to [B, Hq, Lq, Lk] = ", ShapeString(target),
                         " (dim ", d, " must be 1 or ", want, ")"));
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

absl::Status Sdpa(const View4& q, const View4& k, const View4& v, const MaskSpec& mask,
                  float scale, const MutView4& out, float* weights) {
  ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
  const int64_t batch = q.dims[0], hq = q.dims[1], lq = q.dims[2], dk = q.dims[3];
  const int64_t hkv = k.dims[1], lk = k.dims[2], dv = v.dims[3];
  const int64_t group = hq / hkv;
  if (scale == 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const KeepIndex keep = MakeKeepIndex(mask);

  // Query tile. Whole score rows: keep a thread's G × Tq × Lk scores near
  // 1 MiB (a core's L2). Flash: about kFlashRows rows of the G heads against key tiles.
  // Then make at least 4 jobs per thread when the problem allows.
  const int threads = omp_get_max_threads();
  const int64_t full_rows_tq = std::max<int64_t>(1, (int64_t{1} << 18) / (group * lk));
  // Whole score rows are faster while they allow tiles of >= 64 queries
  // (one pass, no rescaling); past that, or when Lk is long, flash.
  const bool use_flash = weights == nullptr && full_rows_tq < 64;
  const int64_t flash_keys =
      std::clamp<int64_t>(kFlashTileBytes / (dk * 4) / 64 * 64, 64, kFlashKeys);
  int64_t tq = use_flash ? std::max<int64_t>(1, kFlashRows / group) : full_rows_tq;
  tq = std::min(tq, lq);
  while (tq > 16 && batch * hkv * ((lq + tq - 1) / tq) < 4 * threads) tq = (tq + 1) / 2;
  std::vector<Job> jobs;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < hkv; ++g) {
      for (int64_t i0 = 0; i0 < lq; i0 += tq) jobs.push_back({b, g, i0, std::min(lq, i0 + tq)});
    }
  }

  // The G heads' rows of a job form one uniformly strided matrix when the job
  // covers all of Lq and heads follow each other in memory (or Lq == 1).
  auto merged_stride = [&](const int64_t* strides) -> int64_t {
    if (lq == 1) return strides[1];
    if (tq == lq && strides[1] == lq * strides[2]) return strides[2];
    return 0;
  };
  const int64_t q_merged = merged_stride(q.strides);
  const int64_t o_merged = merged_stride(out.strides);
  const bool merge = q_merged != 0 && o_merged != 0;

  std::mutex error_mu;
  absl::Status error;
  auto record = [&](absl::Status s) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (error.ok()) error = std::move(s);
  };

  const CancellationCheck* cancel = CurrentCancellation();
  // Never wake more threads than there are jobs (a tiny call runs alone).
  const int team = static_cast<int>(std::min<size_t>(static_cast<size_t>(threads), jobs.size()));
#pragma omp parallel num_threads(team)
  {
    // Scratch: the few-rows path's score rows of one key block; the
    // whole-row path's G·Tq score rows of Lk; the flash path's score tile.
    // A last query tile of fewer rows can be few-rows when full ones are not.
    const int64_t tail = lq % tq;
    const bool few_full = internal::TakesFewRows(tq, group * tq),
               few_tail = tail > 0 && internal::TakesFewRows(tail, group * tail);
    const bool flash = use_flash && !few_full;
    int64_t scratch_floats = 0;
    if (weights == nullptr) {
      scratch_floats = few_full ? internal::FewRowsScratch(group * tq, dk, dv)
                                : group * tq * (flash ? flash_keys : lk);
      if (few_tail) {
        scratch_floats = std::max(scratch_floats, internal::FewRowsScratch(group * tail, dk, dv));
      }
    }
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
    std::vector<float> few_acc(static_cast<size_t>(group * tq * dv));
    std::vector<float> row_max(static_cast<size_t>(group * tq)), row_sum(row_max.size());
    std::vector<float> q_pack(group > 1 && weights == nullptr ? static_cast<size_t>(group * tq * dk)
                                                              : 0);
#pragma omp for schedule(dynamic, 1)
    for (size_t job_index = 0; job_index < jobs.size(); ++job_index) {
      const Job job = jobs[job_index];
      if (absl::Status c = PollCancellation(cancel); !c.ok()) {  // between tiles
        record(std::move(c));
        continue;
      }
      const int64_t rows = job.i1 - job.i0;
      // Keys beyond the last one any row of the tile sees are masked for all
      // of them and get exactly zero weight, unless a row is fully masked
      // (then it averages all Lk values): compute only the visible span.
      int64_t kmax = lk;
      if (!mask.has_keep()) {
        const int64_t last = VisibleKeys(mask, job.b, job.i1 - 1, lq, lk);
        const int64_t first = VisibleKeys(mask, job.b, job.i0, lq, lk);
        if (first >= 1) kmax = last;  // visible counts grow with i
      }
      if (internal::TakesFewRows(rows, group * rows)) {
        // Decode-like: read each key/value row once for the few rows.
        const int64_t block = internal::FewRowsKeyBlock(group * rows, dk, dv);
        const float* q_rows[internal::kMaxFewRows];
        float* s_rows[internal::kMaxFewRows];
        float* o_rows[internal::kMaxFewRows];
        const uint8_t* keep_rows[internal::kMaxFewRows];
        int64_t visible[internal::kMaxFewRows];
        int64_t nr = 0;
        for (int64_t hl = 0; hl < group; ++hl) {
          const int64_t h = job.g * group + hl;
          for (int64_t i = job.i0; i < job.i1; ++i, ++nr) {
            q_rows[nr] = q.Row(job.b, h, i);
            o_rows[nr] = out.Row(job.b, h, i);
            s_rows[nr] = weights != nullptr ? weights + ((job.b * hq + h) * lq + i) * lk
                                            : scratch.data() + nr * block;
            keep_rows[nr] = keep.Row(job.b, h, i);
            visible[nr] = VisibleKeys(mask, job.b, i, lq, lk);
          }
        }
        internal::AttendFewRows(
            nr, q_rows, dk, dv, kmax, visible, keep.data != nullptr ? keep_rows : nullptr,
            keep.strides[3], scale,
            [&](int64_t j) { return internal::RowRun{k.Row(job.b, job.g, j), k.strides[2], lk - j}; },
            [&](int64_t j) { return internal::RowRun{v.Row(job.b, job.g, j), v.strides[2], lk - j}; },
            s_rows, few_acc.data(), o_rows, weights != nullptr);
        if (weights != nullptr) {
          for (int64_t r = 0; r < nr; ++r) std::fill(s_rows[r] + kmax, s_rows[r] + lk, 0.0f);
        }
        continue;
      }
      // The G heads' rows of the job as one matrix of M = G·rows rows
      // (head-major): in place when uniformly strided, else packed, so each
      // GEMM sees all rows that share the K/V tile.
      const int64_t m_rows = group * rows;
      const float* qm = q.Row(job.b, job.g * group, job.i0);
      int64_t q_ld = q.strides[2];
      if (group > 1 && weights == nullptr) {
        if (merge && rows == lq) {
          q_ld = q_merged;
        } else {
          for (int64_t row = 0; row < m_rows; ++row) {
            std::copy_n(q.Row(job.b, job.g * group + row / rows, job.i0 + row % rows), dk,
                        q_pack.data() + row * dk);
          }
          qm = q_pack.data();
          q_ld = dk;
        }
      }
      auto visible_of = [&](int64_t row) {
        return VisibleKeys(mask, job.b, job.i0 + row % rows, lq, lk);
      };
      auto keep_of = [&](int64_t row) {
        return keep.Row(job.b, job.g * group + row / rows, job.i0 + row % rows);
      };
      // Divides the unnormalised P·V rows (acc, ld dv) by their sums into out.
      auto write_out = [&](const float* acc) {
        for (int64_t row = 0; row < m_rows; ++row) {
          float* o = out.Row(job.b, job.g * group + row / rows, job.i0 + row % rows);
          const float inv = 1.0f / row_sum[row];
          const float* a = acc + row * dv;
          for (int64_t x = 0; x < dv; ++x) o[x] = a[x] * inv;
        }
      };
      if (flash) {
        // Flash: key tiles of flash_keys with an online softmax, so only an
        // M × flash_keys score tile exists; every K/V tile is read once for
        // all G heads sharing it.
        std::fill(row_max.begin(), row_max.begin() + m_rows, -INFINITY);
        std::fill(row_sum.begin(), row_sum.begin() + m_rows, 0.0f);
        std::fill(few_acc.begin(), few_acc.begin() + m_rows * dv, 0.0f);
        absl::Status status;
        for (int64_t k0 = 0; k0 < kmax && status.ok(); k0 += flash_keys) {
          const int64_t n = std::min(flash_keys, kmax - k0);
          const Mat kt = Mat::Transposed(k.Row(job.b, job.g, k0), dk, n, k.strides[2]);
          const Mat vt = Mat::RowMajor(v.Row(job.b, job.g, k0), n, dv, v.strides[2]);
          status = internal::Matmul(Mat::RowMajor(qm, m_rows, dk, q_ld), kt, scratch.data(),
                                    flash_keys);
          if (!status.ok()) break;
          for (int64_t row = 0; row < m_rows; ++row) {
            const uint8_t* keep_row = keep_of(row);
            const float alpha = internal::OnlineSoftmaxTile(
                scratch.data() + row * flash_keys, n, scale, visible_of(row) - k0,
                keep_row != nullptr ? keep_row + k0 * keep.strides[3] : nullptr, keep.strides[3],
                row_max[row], row_sum[row]);
            if (alpha != 1.0f) {
              float* acc = few_acc.data() + row * dv;
              for (int64_t x = 0; x < dv; ++x) acc[x] *= alpha;
            }
          }
          status = internal::Matmul(Mat::RowMajor(scratch.data(), m_rows, n, flash_keys), vt,
                                    few_acc.data(), dv, nullptr, /*accumulate=*/true);
        }
        if (!status.ok()) {
          record(std::move(status));
          continue;
        }
        write_out(few_acc.data());
        continue;
      }
      if (weights == nullptr) {
        // Whole score rows of all M rows at once, softmax without the
        // division, P·V, then the division on the Dv-wide output rows.
        const Mat kt = Mat::Transposed(k.Row(job.b, job.g, 0), dk, kmax, k.strides[2]);
        const Mat vm = Mat::RowMajor(v.Row(job.b, job.g, 0), kmax, dv, v.strides[2]);
        absl::Status status =
            internal::Matmul(Mat::RowMajor(qm, m_rows, dk, q_ld), kt, scratch.data(), lk);
        if (status.ok()) {
          for (int64_t row = 0; row < m_rows; ++row) {
            const uint8_t* keep_row = keep_of(row);
            row_sum[row] = internal::UnnormalizedSoftmaxRow(scratch.data() + row * lk, kmax, scale,
                                                            visible_of(row), keep_row,
                                                            keep.strides[3]);
          }
          status = internal::Matmul(Mat::RowMajor(scratch.data(), m_rows, kmax, lk), vm,
                                    few_acc.data(), dv);
        }
        if (!status.ok()) {
          record(std::move(status));
          continue;
        }
        write_out(few_acc.data());
        continue;
      }
      // Weights asked for: score rows are the caller's weights rows, head h
      // (local index hl) and query i0 + t at s_base + hl·lq·lk + t·lk.
      float* s_base = weights + ((job.b * hq + job.g * group) * lq + job.i0) * lk;
      const int64_t s_head_stride = lq * lk;
      const Mat kt = Mat::Transposed(k.Row(job.b, job.g, 0), dk, kmax, k.strides[2]);
      const Mat vm = Mat::RowMajor(v.Row(job.b, job.g, 0), kmax, dv, v.strides[2]);
      const bool merged = merge && rows == lq;
      absl::Status status;
      if (merged) {
        status = internal::Matmul(Mat::RowMajor(qm, m_rows, dk, q_merged), kt, s_base, lk);
      } else {
        for (int64_t hl = 0; hl < group && status.ok(); ++hl) {
          const float* q0 = q.Row(job.b, job.g * group + hl, job.i0);
          status = internal::Matmul(Mat::RowMajor(q0, rows, dk, q.strides[2]), kt,
                                    s_base + hl * s_head_stride, lk);
        }
      }
      if (!status.ok()) {
        record(std::move(status));
        continue;
      }
      for (int64_t row = 0; row < m_rows; ++row) {
        float* s_row = s_base + row / rows * s_head_stride + row % rows * lk;
        internal::MaskedSoftmaxRow(s_row, kmax, scale, visible_of(row), keep_of(row),
                                   keep.strides[3]);
        std::fill(s_row + kmax, s_row + lk, 0.0f);
      }
      if (merged) {
        float* o0 = out.Row(job.b, job.g * group, job.i0);
        status = internal::Matmul(Mat::RowMajor(s_base, m_rows, kmax, lk), vm, o0, o_merged);
      } else {
        for (int64_t hl = 0; hl < group && status.ok(); ++hl) {
          float* o0 = out.Row(job.b, job.g * group + hl, job.i0);
          status = internal::Matmul(Mat::RowMajor(s_base + hl * s_head_stride, rows, kmax, lk), vm,
                                    o0, out.strides[2]);
        }
      }
      if (!status.ok()) record(std::move(status));
    }
  }
  return error;
}

absl::Status SdpaReference(const View4& q, const View4& k, const View4& v, const MaskSpec& mask,
                           float scale, const MutView4& out, float* weights) {
  ATTN_RETURN_IF_ERROR(ValidateSdpa(q, k, v, mask));
  const int64_t batch = q.dims[0], hq = q.dims[1], lq = q.dims[2], dk = q.dims[3];
  const int64_t hkv = k.dims[1], lk = k.dims[2], dv = v.dims[3];
  const int64_t group = hq / hkv;
  const double s = scale == 0.0f ? 1.0 / std::sqrt(static_cast<double>(dk)) : scale;
  const KeepIndex keep = MakeKeepIndex(mask);
  std::vector<double> p(lk), o(dv);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < lq; ++i) {
        const float* qi = q.Row(b, h, i);
        const int64_t visible = VisibleKeys(mask, b, i, lq, lk);
        const uint8_t* keep_row = keep.Row(b, h, i);
        double max = -1e300;
        for (int64_t j = 0; j < lk; ++j) {
          const float* kj = k.Row(b, g, j);
          double dot = 0;
          for (int64_t d = 0; d < dk; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          const bool kept = j < visible && (keep_row == nullptr || keep_row[j * keep.strides[3]]);
          p[j] = kept ? dot * s : static_cast<double>(kMaskedScore);
          max = std::max(max, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < lk; ++j) sum += (p[j] = std::exp(p[j] - max));
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

template <typename Fn>
absl::StatusOr<AttentionResult> AttendWith(Fn fn, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const MaskSpec& mask,
                                           const SdpaOptions& options) {
  ATTN_RETURN_IF_ERROR(CheckRank4(q, "query", "[B, Hq, Lq, Dk]"));
  ATTN_RETURN_IF_ERROR(CheckRank4(k, "key", "[B, Hkv, Lk, Dk]"));
  ATTN_RETURN_IF_ERROR(CheckRank4(v, "value", "[B, Hkv, Lk, Dv]"));
  const View4 qv = View4::Of(q), kv = View4::Of(k), vv = View4::Of(v);
  ATTN_RETURN_IF_ERROR(ValidateSdpa(qv, kv, vv, mask));
  AttentionResult result;
  result.output = Tensor({q.dim(0), q.dim(1), q.dim(2), v.dim(3)});
  if (options.return_weights) result.weights = Tensor({q.dim(0), q.dim(1), q.dim(2), k.dim(2)});
  ATTN_RETURN_IF_ERROR(fn(qv, kv, vv, mask, options.scale, MutView4::Of(result.output),
                          options.return_weights ? result.weights.data() : nullptr));
  return result;
}

}  // namespace

absl::StatusOr<AttentionResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                       const MaskSpec& mask, const SdpaOptions& options) {
  return AttendWith(Sdpa, query, key, value, mask, options);
}

absl::StatusOr<AttentionResult> AttendReference(const Tensor& query, const Tensor& key,
                                                const Tensor& value, const MaskSpec& mask,
                                                const SdpaOptions& options) {
  return AttendWith(SdpaReference, query, key, value, mask, options);
}

const char* VariantName(int64_t hq, int64_t hkv) {
  if (hkv == hq) return "mha";
  if (hkv == 1) return "mqa";
  return "gqa";
}

}  // namespace attention
