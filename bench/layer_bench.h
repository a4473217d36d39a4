// attention_bench's whole-layer rows: decode steps through DecodeSession
// per KV-cache dtype and compute dtype, with the step's attention alone
// against its roof, and one Forward of the server's demo-gqa layer.
#ifndef ATTENTION_BENCH_LAYER_BENCH_H_
#define ATTENTION_BENCH_LAYER_BENCH_H_

#include "bench/options.h"
#include "bench/probes.h"
#include "bench/report.h"

namespace attention::bench {

// Per variant at d_model 4096 (32 query heads) whose name contains
// opt.filter (all when the filter is a substring of "decode"): one token per
// batch row (B = opt.decode_batch) after Lk = 4096 cached tokens. Returns
// the exit status (errors on stderr).
int RunLayerDecode(const Options& opt, Probes& probes, Report& report);

// A gqa layer at d_model 4096 (32 query / 8 kv heads) with a sliding window
// of W = 4096 keys, when opt.filter is empty or a part of "window_decode"
// or of the row's name: one token per batch row (B = opt.decode_batch) at
// positions 2W and 16W of a stream, their steps (and their attention alone)
// timed alternately. Returns the exit status.
int RunWindowDecode(const Options& opt, Report& report);

// The demo-gqa layer's causal Forward at B = 1, L = 2048. Returns the exit
// status.
int RunLayerForward(const Options& opt, Report& report);

}  // namespace attention::bench

#endif  // ATTENTION_BENCH_LAYER_BENCH_H_
