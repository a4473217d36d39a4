// Private: the vector kernels of attention that are ours rather than
// oneDNN's (online-softmax tiles, a whole score row being one tile, and the
// few-rows score and value loops of decode), compiled twice, for AVX2 and
// for AVX-512, and chosen once at start from the CPU (ATTN_ISA=avx2 forces
// AVX2). oneDNN
// dispatches its own GEMMs to AVX-512 where the CPU has it; kernels left at
// AVX2 beside them would run at half its width. The decode loops also read
// K and V rows stored as bfloat16, float16 or int8 (KvRows), widened to
// float32 in registers.
#ifndef ATTENTION_CORE_INTERNAL_KERNELS_H_
#define ATTENTION_CORE_INTERNAL_KERNELS_H_

#include <cstdint>

namespace attention::internal {

// The element types a KV cache stores (kv_cache.h).
enum class KvElem : uint8_t { kF32 = 0, kBf16 = 1, kF16 = 2, kI8 = 3 };
inline constexpr int kKvElems = 4;

// Rows of K or V in a stored type: row j (j >= 0) at `data` + j·stride
// elements; for kI8, its scale at scales[j·scale_stride] (value = int8 ·
// scale); scales is unused (may be null) for the other types.
struct KvRows {
  const void* data;
  int64_t stride;
  const float* scales;
  int64_t scale_stride;
};

struct KernelTable {
  const char* isa;  // "avx2" or "avx512"

  // One key tile of an online (flash) softmax row; see OnlineSoftmaxTile
  // (softmax.h). A whole row is one tile.
  float (*online_softmax_tile)(float* s, int64_t n, float scale, int64_t visible,
                               const uint8_t* keep, int64_t keep_stride, float* m, float* l);

  // s[i][j] = q[i] · k[j · k_stride, + dk) for i < nr (>= 1, four rows a
  // pass), j < n.
  void (*scores)(int64_t nr, const float* const* q, int64_t dk, const float* k, int64_t k_stride,
                 int64_t n, float* const* s);

  // acc[i · dv + x] += Σ_{j < n} p[i][j] · v[j · v_stride + x] for i < nr
  // (1..7), x < dv.
  void (*accumulate)(int64_t nr, const float* const* p, const float* v, int64_t v_stride, int64_t n,
                     int64_t dv, float* acc);

  // As scores / accumulate, with K or V rows in a stored type, converted
  // to float32 in registers: s[i][j] = q[i] · key(j);
  // acc[i·dv + x] += Σ_{j<n} p[i][j] · value(j)[x]. Index by KvElem. The
  // kF32 entries compute exactly what scores / accumulate do.
  //   kBf16: the upper 16 bits of a float32.   kF16: IEEE binary16.
  //   kI8:   value = int8 · scale of its row; scores multiply each row's
  //          dot product by the scale, accumulate weights row j by
  //          p[i][j] · scale_j.
  // Row counts nr as scores (>= 1) and accumulate (1..7). Reads no element
  // past a row's dk (dv) elements.
  void (*scores_kv[kKvElems])(int64_t nr, const float* const* q, int64_t dk, KvRows k, int64_t n,
                              float* const* s);
  void (*accumulate_kv[kKvElems])(int64_t nr, const float* const* p, KvRows v, int64_t n,
                                  int64_t dv, float* acc);
};

// The table in use.
const KernelTable& Kernels();

// Switches the table ("avx2" or "avx512"); false (and no change) when the
// CPU lacks the ISA or the name is unknown. For tests and benchmarks; not
// safe while kernels run.
bool SelectKernels(const char* isa);

// Tables for each ISA (kernels_avx2.cc, kernels_avx512.cc).
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_KERNELS_H_
