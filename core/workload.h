// One attention problem size, shared by tests and benchmarks: its dims, its
// FLOP count and the tolerance a result of it is checked to.
#ifndef ATTENTION_CORE_WORKLOAD_H_
#define ATTENTION_CORE_WORKLOAD_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/sdpa.h"

namespace attention {

struct Workload {
  std::string name;
  int64_t b = 1, hq = 1, hkv = 1, lq = 1, lk = 1, dk = 1, dv = 1;
  bool causal = false;
  // MLA decode: the value is the first Dv columns of the key (one latent).
  bool value_in_key = false;

  // 2·B·Hq·(visible pairs)·(Dk + Dv); causal counts only visible pairs.
  double Flops() const { return SdpaFlops(b, hq, lq, lk, dk, dv, causal); }
  // Bytes of K and V read once (float32); V counted once more only when it
  // is not part of K.
  double KvBytes() const {
    return 4.0 * static_cast<double>(b * hkv * lk) *
           static_cast<double>(value_in_key ? dk : dk + dv);
  }
  // Relative (max-norm) tolerance of float32 results against the double
  // reference; grows with the softmax length.
  double Tolerance() const { return 1e-5 * (4.0 + std::sqrt(static_cast<double>(lk))); }
};

// The benchmark workloads of the performance issue.
inline std::vector<Workload> StandardWorkloads() {
  return {
      {"mha_b4_h16_l512_d64", 4, 16, 16, 512, 512, 64, 64, false, false},
      {"gqa_prefill_b1_h32kv8_l2048_d128_causal", 1, 32, 8, 2048, 2048, 128, 128, true, false},
      {"gqa_decode_b8_h32kv8_lk4096_d128", 8, 32, 8, 1, 4096, 128, 128, false, false},
      {"mqa_decode_b8_h32kv1_lk4096_d128", 8, 32, 1, 1, 4096, 128, 128, false, false},
      {"mla_decode_b8_h16_lk4096_dk576_dv512", 8, 16, 1, 1, 4096, 576, 512, false, true},
  };
}

}  // namespace attention

#endif  // ATTENTION_CORE_WORKLOAD_H_
