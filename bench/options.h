// attention_bench's command line, parsed in attention_bench.cc's main.
#ifndef ATTENTION_BENCH_OPTIONS_H_
#define ATTENTION_BENCH_OPTIONS_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace attention::bench {

struct Options {
  int64_t memory_l = 0;      // --memory: the memory check alone, at this L
  int threads = 0;           // --threads; 0: OpenMP's default
  std::string filter;        // --filter: a substring of the rows' names
  double min_time = 1.0;     // --min_time: seconds per row, at least
  int64_t decode_batch = 8;  // --decode_batch: B of the layer-decode table
  bool json = false;         // --json
  std::vector<DType> dtypes = {DType::kFloat32, DType::kBfloat16};  // --dtype: compute dtypes
};

inline bool Wants(const Options& opt, DType compute) {
  return std::find(opt.dtypes.begin(), opt.dtypes.end(), compute) != opt.dtypes.end();
}

}  // namespace attention::bench

#endif  // ATTENTION_BENCH_OPTIONS_H_
