// The kernels of kernels.h for AVX2 + FMA (compiled with the project's
// -march, x86-64-v3).
#define ATTN_KERNEL_NS avx2
#include "core/internal/kernels_impl.inc"

namespace attention::internal {
const KernelTable& Avx2Kernels() { return avx2::Table(); }
}  // namespace attention::internal
