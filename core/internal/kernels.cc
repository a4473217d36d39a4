#include "core/internal/kernels.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace attention::internal {
namespace {

bool CpuHasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

const KernelTable* Initial() {
  const char* forced = std::getenv("ATTN_ISA");
  if (forced != nullptr && std::strcmp(forced, "avx2") == 0) return &Avx2Kernels();
  return CpuHasAvx512() ? &Avx512Kernels() : &Avx2Kernels();
}

std::atomic<const KernelTable*>& Current() {
  static std::atomic<const KernelTable*> current{Initial()};
  return current;
}

}  // namespace

const KernelTable& Kernels() { return *Current().load(std::memory_order_relaxed); }

bool SelectKernels(const char* isa) {
  if (std::strcmp(isa, "avx2") == 0) {
    Current().store(&Avx2Kernels());
    return true;
  }
  if (std::strcmp(isa, "avx512") == 0 && CpuHasAvx512()) {
    Current().store(&Avx512Kernels());
    return true;
  }
  return false;
}

}  // namespace attention::internal
