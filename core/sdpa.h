// Scaled-dot-product attention over projected heads, with MHA/GQA/MQA head
// sharing and the masks of the service contract (docs/API.md).
//
// Shapes (one line per tensor; B batch, Hq query heads, Hkv key/value heads,
// Lq queries, Lk keys, Dk query/key width, Dv value width):
//   query   [B, Hq,  Lq, Dk]
//   key     [B, Hkv, Lk, Dk]
//   value   [B, Hkv, Lk, Dv]
//   output  [B, Hq,  Lq, Dv]
//   weights [B, Hq,  Lq, Lk]   (dense, only when asked for)
// Broadcast rule, stated once: Hq % Hkv == 0 and query head h reads kv head
// h / (Hq / Hkv), as torch's repeat_interleave; K/V are never copied.
//
// Scores are q·kᵀ · scale (scale 0 means 1/sqrt(Dk)). Masks AND together; a
// masked score becomes -1e9 before the softmax, exactly as the reference
// modules' masked_fill, so a fully masked row averages all values.
//   causal:       query i sees key j iff j <= i + (Lk - Lq) (bottom-right).
//   key_lengths:  one per batch row, in 1..Lk; keys j >= length are masked.
//   keep:         nonzero = keep; its shape broadcasts (NumPy rules, rank
//                 <= 4, right-aligned) to [B, Hq, Lq, Lk].
//   sliding_window W > 0: query i, at position p = i + (Lk - Lq), sees keys
//                 p - W + 1 .. p (W keys, itself included; so it is causal
//                 too). The kernels skip the key tiles outside every row's
//                 window rather than masking them.
//
// Terms of the scores and the softmax (SdpaTerms), for real models' layers:
//   logit_softcap c > 0: s <- c · tanh(s / c) on the scaled scores, before
//                 masking (Gemma 2).
//   sinks [Hq]:   one learned logit per query head joins each softmax row:
//                 it takes probability mass but adds no value (gpt-oss), so
//                 p_j = exp(s_j) / (exp(sink_h) + Σ_j exp(s_j)).
//   lse [B, Hq, Lq] (output): log Σ_j exp(s_j) over the keys the row sees,
//                 the sink's exp(sink_h) included; -inf for a row that sees
//                 no key and has no sink. Two calls over disjoint key shards
//                 merge exactly: o = Σ_s exp(lse_s - lse) · o_s with lse =
//                 log Σ_s exp(lse_s) (give the sinks to one shard only).
//
// Non-finite inputs propagate as in the reference (PyTorch's math: q·kᵀ ·
// scale, masked_fill(-1e9), softmax, ·v), on every path:
//   - a NaN or +Inf among a row's unmasked scores (a NaN in its query row;
//     a NaN or ±Inf in a key it sees, unless q·k comes out -Inf) makes that
//     row's output and all Lk of its weights NaN; a -Inf score is weight 0;
//   - a masked score is -1e9 whatever q·k was: a NaN that reaches only masked
//     scores is hidden, and a fully masked row still averages all values;
//   - a NaN in any value row of batch row b and kv head g makes the output
//     of every query row of the heads reading it NaN (±Inf: non-finite),
//     hidden keys included (causal, key_lengths, keep): the reference
//     multiplies them by a weight of 0, and 0·NaN = NaN. Weights ignore V.
// One difference: a row whose unmasked scores are all -Inf is NaN (the
// reference would average the values of its masked keys).
//
// Errors: INVALID_ARGUMENT for any shape or mask inconsistency, with a message
// naming the field ("query", "key", "value", "mask.key_lengths", "mask.keep",
// "mask.sliding_window", "logit_softcap", "sinks"), the expected and the
// actual value; INTERNAL if oneDNN fails.
// Thread-safety: all functions may be called concurrently.
#ifndef ATTENTION_CORE_SDPA_H_
#define ATTENTION_CORE_SDPA_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/cost_model.h"  // SdpaFlops, the cost of these functions
#include "core/dtype.h"
#include "core/tensor.h"

namespace attention {

struct MaskSpec {
  bool causal = false;
  std::vector<int64_t> key_lengths;  // empty, or one per batch row
  std::vector<int64_t> keep_shape;   // shape of `keep`; rank 0..4
  std::vector<uint8_t> keep;         // empty = no keep mask

  int64_t sliding_window = 0;        // W keys up to the query's position; 0: none

  bool has_keep() const { return !keep.empty(); }
  bool empty() const {
    return !causal && key_lengths.empty() && keep.empty() && sliding_window == 0;
  }
};

// Optional terms of one call (see the header comment); the defaults add
// nothing. sinks and lse, when set, point at Hq and B·Hq·Lq floats.
struct SdpaTerms {
  float logit_softcap = 0.0f;    // c > 0: s <- c·tanh(s / c) before masking
  const float* sinks = nullptr;  // [Hq] learned logits, or null
  float* lse = nullptr;          // [B, Hq, Lq] written when not null

  bool empty() const { return logit_softcap == 0.0f && sinks == nullptr && lse == nullptr; }
};

struct SdpaOptions {
  float scale = 0.0f;  // 0: 1/sqrt(Dk)
  bool return_weights = false;
  DType compute_dtype = DType::kFloat32;  // or kBfloat16 (Sdpa's `compute`)
  float logit_softcap = 0.0f;             // SdpaTerms::logit_softcap
  std::vector<float> sinks = {};          // empty, or [Hq] (SdpaTerms::sinks)
  bool return_lse = false;                // AttentionResult::lse
};

// Checks shapes and mask against each other (see the header comment).
absl::Status ValidateSdpa(const View4& query, const View4& key, const View4& value,
                          const MaskSpec& mask);
// Checks the terms against the query's Hq: a finite logit_softcap >= 0
// ("logit_softcap"), finite sinks ("sinks"). `hq_sinks` is the number of
// sinks given (0 when none), which must be Hq.
absl::Status ValidateSdpaTerms(float logit_softcap, int64_t hq_sinks, const float* sinks,
                               int64_t hq);

// The fast kernel: validates, plans (query tiles and a path per tile:
// few-rows loops, oneDNN matmuls over whole score rows or flash key tiles)
// and runs the tiles in parallel over B × Hkv × tiles. Writes `output` (any
// strides) and, when `weights` is not null, the dense [B, Hq, Lq, Lk]
// probabilities.
absl::Status Sdpa(const View4& query, const View4& key, const View4& value, const MaskSpec& mask,
                  float scale, const MutView4& output, float* weights,
                  const SdpaTerms& terms = {});
// The same in a compute dtype: kFloat32 is the above; kBfloat16 rounds the
// products' operands (query, key, value) to bfloat16 first and accumulates,
// and takes the softmax, in float32 (SdpaBf16 on bf16 copies). Another
// dtype is INVALID_ARGUMENT naming "compute_dtype".
absl::Status Sdpa(const View4& query, const View4& key, const View4& value, const MaskSpec& mask,
                  float scale, const MutView4& output, float* weights, DType compute,
                  const SdpaTerms& terms = {});

// Operands held in bfloat16: both products in bf16 with float32
// accumulation (oneDNN's bf16 matmul where the CPU has one; the few-rows
// loops of decode read the bf16 rows, widening them in registers), the
// softmax in float32, and the probabilities rounded to bf16 before P·V
// (before their division by the row's sum; not on the few-rows loops when
// weights are asked for). Without a native bf16 matmul (an AVX2-only CPU,
// or ATTN_ISA=avx2), or with one slower than sgemm (Bf16MatmulPreferred in
// core/internal/gemm.h), the float32 kernel runs on widened copies,
// rounding P the same way, except for decode's few rows. Output and weights (not
// rounded) are float32. Same contract as Sdpa.
absl::Status SdpaBf16(const Bf16View4& query, const Bf16View4& key, const Bf16View4& value,
                      const MaskSpec& mask, float scale, const MutView4& output, float* weights,
                      const SdpaTerms& terms = {});

// The plain reference: loops in double precision, no oneDNN. Same contract.
absl::Status SdpaReference(const View4& query, const View4& key, const View4& value,
                           const MaskSpec& mask, float scale, const MutView4& output,
                           float* weights, const SdpaTerms& terms = {});

struct AttentionResult {
  Tensor output;   // [B, Hq, Lq, Dv]
  Tensor weights;  // [B, Hq, Lq, Lk] when asked for, else empty
  Tensor lse;      // [B, Hq, Lq] when asked for (return_lse), else empty
};

// Owning conveniences over dense rank-4 tensors.
absl::StatusOr<AttentionResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                       const MaskSpec& mask, const SdpaOptions& options);
absl::StatusOr<AttentionResult> AttendReference(const Tensor& query, const Tensor& key,
                                                const Tensor& value, const MaskSpec& mask,
                                                const SdpaOptions& options);

// "mha" (Hkv == Hq), "mqa" (Hkv == 1 < Hq) or "gqa".
const char* VariantName(int64_t hq, int64_t hkv);

}  // namespace attention

#endif  // ATTENTION_CORE_SDPA_H_
