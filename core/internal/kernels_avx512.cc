// The kernels of kernels.h for AVX-512 (this file alone is compiled with
// -march=x86-64-v4; its code runs only where the CPU reports AVX-512).
#define ATTN_KERNEL_NS avx512
// GCC 12 reports its own _mm256_undefined_pd() inside _mm512_reduce_add_ps
// as uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "core/internal/kernels_impl.inc"

namespace attention::internal {
const KernelTable& Avx512Kernels() { return avx512::Table(); }
}  // namespace attention::internal
