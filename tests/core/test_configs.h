// Layer configs for tests, one builder per variant with its dims in the
// order the variant's config names them.
#ifndef ATTENTION_TESTS_CORE_TEST_CONFIGS_H_
#define ATTENTION_TESTS_CORE_TEST_CONFIGS_H_

#include <cstdint>

#include "core/config.h"

namespace attention {

inline ModuleConfig Mha(int64_t d, int64_t h, bool bias = true) {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = d;
  c.num_heads = h;
  c.bias = bias;
  return c;
}
inline ModuleConfig Gqa(int64_t d, int64_t hq, int64_t hkv) {
  ModuleConfig c = Mha(d, hq);
  c.variant = Variant::kGqa;
  c.num_kv_heads = hkv;
  return c;
}
inline ModuleConfig Mqa(int64_t d, int64_t h) {
  ModuleConfig c = Mha(d, h);
  c.variant = Variant::kMqa;
  return c;
}
inline ModuleConfig SelfAttn(int64_t d, int64_t dk, int64_t dv) {
  ModuleConfig c;
  c.variant = Variant::kSelfAttention;
  c.d_model = d;
  c.d_k = dk;
  c.d_v = dv;
  return c;
}
inline ModuleConfig Mla(int64_t d, int64_t h, int64_t qr, int64_t r, int64_t dn, int64_t dr,
                        int64_t dv) {
  ModuleConfig c;
  c.variant = Variant::kMla;
  c.d_model = d;
  c.num_heads = h;
  c.q_lora_rank = qr;
  c.kv_lora_rank = r;
  c.qk_nope_head_dim = dn;
  c.qk_rope_head_dim = dr;
  c.v_head_dim = dv;
  return c;
}

}  // namespace attention

#endif  // ATTENTION_TESTS_CORE_TEST_CONFIGS_H_
