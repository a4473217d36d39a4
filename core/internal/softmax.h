// Private: the masked row softmax of attention (vectorised in kernels.h).
#ifndef ATTENTION_CORE_INTERNAL_SOFTMAX_H_
#define ATTENTION_CORE_INTERNAL_SOFTMAX_H_

#include <cmath>
#include <cstdint>

namespace attention::internal {

// The value a masked score takes before softmax, as the reference modules'
// masked_fill(mask == 0, -1e9): a fully masked row averages all values.
inline constexpr float kMaskedScore = -1e9f;

// One key tile of an online (flash) softmax row. In place over s[0, n):
// scale, mask (j >= visible or keep[j·keep_stride] == 0 -> kMaskedScore),
// then s[j] = exp(s[j] − m') with m' = max(m, max_j s[j]); updates the
// running max m and sum l (l = l·exp(m − m') + Σ s[j]) and returns
// exp(m − m'), the factor the row's accumulated output must be scaled by.
// Start a row with m = -infinity, l = 0.
float OnlineSoftmaxTile(float* s, int64_t n, float scale, int64_t visible, const uint8_t* keep,
                        int64_t keep_stride, float& m, float& l);

// s[j] = cap · tanh(s[j] · scale / cap) over [0, n): the logit soft-cap
// (cap > 0) of the scaled scores, which are then softmaxed with scale 1.
void SoftcapRow(float* s, int64_t n, float scale, float cap);

// Running max m and sum l of an online softmax row before its first tile:
// a row with a sink (a finite logit; -infinity for none) starts with the
// sink as its one term.
inline void StartOnlineRow(float sink, float& m, float& l) {
  m = sink;
  l = sink == -INFINITY ? 0.0f : 1.0f;
}

// The log-sum-exp of a finished online row: m + log(l); -infinity when the
// row saw no key and has no sink (every term was a masked score).
float RowLse(float m, float l);

// One tile of keys [k0, k0 + n) of a row in an online softmax (s[0, n)
// their raw q·k scores), for a row that sees keys [first, visible) through
// the causal, key-length and window masks, and keep_row (at key 0, or
// null): keys before `first` get weight exactly 0 without being scaled or
// masked (skipped, not masked: first > 0 only for a row that sees some
// key), then the soft-cap (softcap > 0) and OnlineSoftmaxTile. Returns the
// factor for the row's accumulated output (1 when the tile lies wholly
// before `first`).
float OnlineRowTile(float* s, int64_t k0, int64_t n, float scale, float softcap, int64_t first,
                    int64_t visible, const uint8_t* keep_row, int64_t keep_stride, float& m,
                    float& l);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_SOFTMAX_H_
