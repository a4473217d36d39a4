#include "core/threading.h"

#include <omp.h>

#include <cstdio>
#include <string>

#include "core/internal/kernels.h"
#include "oneapi/dnnl/dnnl.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace attention {

void SetComputeThreads(int threads) { omp_set_num_threads(threads < 1 ? 1 : threads); }

int ComputeThreads() { return omp_get_max_threads(); }

void WarmUp() {
  static const bool done = [] {
    float a[16 * 16] = {}, b[16 * 16] = {}, c[16 * 16];
    // Inside a team, as the kernels call it (single-threaded per job).
#pragma omp parallel num_threads(2)
    {
      if (omp_get_thread_num() == 0) {
        (void)dnnl_sgemm('N', 'T', 16, 16, 16, 1.0f, a, 16, b, 16, 0.0f, c, 16);
      }
    }
    (void)internal::Kernels();
    return true;
  }();
  (void)done;
}

const char* OneDnnVersion() {
  static const std::string version = [] {
    const dnnl_version_t* v = dnnl::version();
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%d.%d.%d", v->major, v->minor, v->patch);
    return std::string(buf);
  }();
  return version.c_str();
}

const char* CpuIsa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::sse41:
      return "sse41";
    default:
      return "other";
  }
}

}  // namespace attention
