// Private: Sdpa's jobs (see sdpa_plan.h), one function per path, and the
// mask indexing they share with SdpaReference.
#ifndef ATTENTION_CORE_INTERNAL_SDPA_PATHS_H_
#define ATTENTION_CORE_INTERNAL_SDPA_PATHS_H_

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/internal/sdpa_plan.h"
#include "core/internal/softmax.h"
#include "core/sdpa.h"
#include "core/tensor.h"

namespace attention::internal {

// The keep mask broadcast to [B, Hq, Lq, Lk]: element strides, 0 on
// broadcast dimensions; data null when there is no keep mask.
struct KeepIndex {
  const uint8_t* data = nullptr;
  int64_t strides[4] = {0, 0, 0, 0};

  const uint8_t* Row(int64_t b, int64_t h, int64_t i) const {
    return data == nullptr ? nullptr : data + b * strides[0] + h * strides[1] + i * strides[2];
  }
};

KeepIndex MakeKeepIndex(const MaskSpec& mask);

// Keys [first, end) that query row i of batch row b may see through the
// causal, key-length and sliding-window masks; {0, 0} when it sees none
// (every score of the row is then masked, and it averages all Lk values).
struct KeyRange {
  int64_t first = 0, end = 0;
};
KeyRange VisibleRange(const MaskSpec& mask, int64_t b, int64_t i, int64_t lq, int64_t lk);

// Operands held in bfloat16 (SdpaBf16): their elements at the offsets of
// the SdpaCall views' strides (whose data is then null).
struct Bf16Operands {
  const uint16_t* q = nullptr;
  const uint16_t* k = nullptr;
  const uint16_t* v = nullptr;
};

// One validated Sdpa call: its operands (shapes as core/sdpa.h), the
// resolved scale, and the plan. With bf16 operands every product is a bf16
// one (oneDNN's bf16 matmul, or the few-rows loops reading bf16 rows), with
// float32 accumulation and softmax; P is rounded to bf16 before P·V (see
// SdpaBf16 in core/sdpa.h).
struct SdpaCall {
  View4 q, k, v;
  Bf16Operands bf16;
  // Float32 operands already rounded to bf16 (bf16 compute without native
  // bf16 matmuls): the probabilities are rounded to bf16 before P·V too.
  bool round_p = false;
  MutView4 out;
  float* weights = nullptr;  // dense [B, Hq, Lq, Lk], or null
  const MaskSpec* mask = nullptr;  // with a sliding window, no keep mask (folded in)
  SdpaTerms terms;
  KeepIndex keep;
  float scale = 1.0f;
  SdpaPlan plan;
  // Row stride of the G heads' rows of a job read as one matrix (a job that
  // covers all of Lq, heads one after another in memory, or Lq == 1); 0
  // when they are not uniformly strided.
  int64_t q_merged = 0, o_merged = 0;

  SdpaCall(const View4& q, const View4& k, const View4& v, const MutView4& out, float* weights,
           const MaskSpec& mask, float scale, const SdpaPlan& plan, Bf16Operands bf16 = {});

  bool is_bf16() const { return bf16.k != nullptr; }
  float Sink(int64_t h) const { return terms.sinks != nullptr ? terms.sinks[h] : -INFINITY; }
  // Writes row (b, h, i)'s log-sum-exp when asked for.
  void StoreLse(int64_t b, int64_t h, int64_t i, float m, float l) const {
    if (terms.lse != nullptr) terms.lse[(b * q.dims[1] + h) * q.dims[2] + i] = RowLse(m, l);
  }
  // Whether P is rounded to bf16 before P·V (either kind of bf16 call).
  bool rounds_p() const { return round_p || is_bf16(); }
  static int64_t Offset(const View4& view, int64_t b, int64_t h, int64_t i) {
    return b * view.strides[0] + h * view.strides[1] + i * view.strides[2];
  }
  const uint16_t* Q16(int64_t b, int64_t h, int64_t i) const { return bf16.q + Offset(q, b, h, i); }
  const uint16_t* K16(int64_t b, int64_t g, int64_t j) const { return bf16.k + Offset(k, b, g, j); }
  const uint16_t* V16(int64_t b, int64_t g, int64_t j) const { return bf16.v + Offset(v, b, g, j); }
};

// A thread's scratch, sized by the plan.
struct SdpaScratch {
  std::vector<float> scores, acc, row_max, row_sum, q_pack;
  // bf16 calls, sized on first use: P rounded to bf16 for P·V, the G heads'
  // query rows packed in bf16, or widened to float32 for the few-rows loops.
  std::vector<uint16_t> p16, q16_pack;
  std::vector<float> q_wide, p_rounded;

  explicit SdpaScratch(const SdpaPlan& plan);
};

// Jobs compute only the keys [kmin, kmax) some row of theirs sees, so value
// rows outside are never read; the reference multiplies them by a weight of
// 0, and 0·NaN = NaN. Whether the mask makes jobs skip keys (causal,
// key_lengths or a window, no keep mask) ...
bool SkipsKeys(const MaskSpec& mask);
// ... and then, for kv slice bg = b·Hkv + g, skipped[x] (x < Dv) is the
// first value row some job of the slice skips before its keys (a window)
// whose column x is NaN or ±Inf, or Lk, and skipped[Dv + x] the last one
// past them, or -1.
void SkippedNonFiniteValues(const SdpaCall& call, int64_t bg, int64_t* skipped);

// Job `index` (0 .. plan.jobs) of the call, on the path the plan gives it.
// Writes the job's output rows (and weights rows, and LSE). With
// `skipped_non_finite` (SkippedNonFiniteValues of its kv slice; null when
// the mask skips no keys), column x of the job's rows is NaN where the job
// skips such a value row. INTERNAL if oneDNN fails.
absl::Status RunSdpaJob(const SdpaCall& call, int64_t index, SdpaScratch& scratch,
                        const int64_t* skipped_non_finite);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_SDPA_PATHS_H_
