// Attention of a decode chunk over a stream's paged KV cache (kv_cache.h):
// the new tokens' queries against every cached key, causal, read run by
// run in place (no gather into a dense K/V).
#ifndef ATTENTION_CORE_PAGED_ATTENTION_H_
#define ATTENTION_CORE_PAGED_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/kv_cache.h"
#include "core/sdpa.h"
#include "core/tensor.h"

namespace attention {

// Query rows of one kv head that share one pass over the cache (a tile).
// Each compute thread holds min(Hq / Hkv · T, kPagedRowTile) · (S + 2·Dv)
// floats of scratch: S = Lk, or min(Lk, T - 1 + W) with a sliding window W
// (PagedScoreSpan).
inline constexpr int64_t kPagedRowTile = 32;

// Causal attention of the cache's last T tokens (the chunk just appended)
// over all Lk = cache.length() tokens cached, bottom-right aligned: query
// token t (0 <= t < T) sees keys 0 .. Lk - T + t, so the outputs equal one
// causal pass over the whole sequence.
//   query  [B, Hq, T, Dk]   Dk = layout.k_width, B = cache.batch(), T <= Lk
//   cache  B rows × Hkv heads × Lk tokens (Hkv = layout.heads)
//   output [B, Hq, T, Dv]   Dv = layout.v_width
// Query head h reads kv head h / (Hq / Hkv); Hq % Hkv == 0. Query and output
// are strided views (any strides); output rows are written, never read.
// Non-finite values propagate as in Sdpa (sdpa.h) over the keys a row
// sees; a value row of a token later than a query row is read only when
// the two share a tile (multiplied by weight 0, so a NaN there also makes
// that earlier row NaN), and never across chunks, whose later tokens do not
// exist yet.
// Errors: INTERNAL if the shapes do not match the cache (callers check the
// user's shapes first) or a row would see a token the cache dropped
// (before cache.first_kept()); CANCELLED when the current cancellation check
// (cancellation.h), polled between tiles, says so, leaving the output
// partly written. Runs on the compute threads (threading.h); the cache is
// only read, so several calls may share one cache.
// With `compute` kBfloat16 (a bf16 layer's decode: its queries already
// rounded) the probabilities are rounded to bf16 before P·V, as Sdpa's bf16
// products round them (sdpa.h).
// A sliding window W > 0: token t (position p = Lk - T + t) sees keys
// p - W + 1 .. p only, and tokens before the first any row sees are never
// read (a cache may have dropped them: PagedKvCache::DropBefore). `terms`:
// the soft-cap and sinks of sdpa.h (its lse is not written).
// The keys of a tile's score rows, S above: Lk, or min(Lk, T - 1 + W)
// with a sliding window W > 0.
inline int64_t PagedScoreSpan(int64_t lk, int64_t t_new, int64_t sliding_window) {
  return sliding_window > 0 && t_new - 1 + sliding_window < lk ? t_new - 1 + sliding_window : lk;
}

absl::Status PagedSdpa(const View4& query, const PagedKvCache& cache, float scale,
                       const MutView4& output, DType compute = DType::kFloat32,
                       int64_t sliding_window = 0, const SdpaTerms& terms = {});

}  // namespace attention

#endif  // ATTENTION_CORE_PAGED_ATTENTION_H_
