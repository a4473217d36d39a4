#include "bench/probes.h"

#include <immintrin.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "core/dtype.h"
#include "core/internal/kernels.h"
#include "core/threading.h"
#include "oneapi/dnnl/dnnl.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "oneapi/dnnl/dnnl_debug.h"

namespace attention::bench {

std::vector<float> RandomBuffer(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : v) x = dist(gen);
  return v;
}

namespace {

class F32GemmProbe : public GemmProbe {
 public:
  F32GemmProbe() : a_(RandomBuffer(kN * kN, 1)), b_(RandomBuffer(kN * kN, 2)), c_(kN * kN) {}
  void Run() override {
    (void)dnnl_sgemm('N', 'N', kN, kN, kN, 1.0f, a_.data(), kN, b_.data(), kN, 0.0f, c_.data(), kN);
  }

 private:
  std::vector<float> a_, b_, c_;
};

// The matmul primitive is built once (as core/internal/gemm.cc builds its
// own) and executed on one stream; oneDNN spreads it over the OpenMP
// threads.
class Bf16GemmProbe : public GemmProbe {
 public:
  Bf16GemmProbe(dnnl::engine engine, dnnl::matmul::primitive_desc pd)
      : engine_(std::move(engine)),
        stream_(engine_),
        matmul_(pd),
        a_(ToBf16(RandomBuffer(kN * kN, 1))),
        b_(ToBf16(RandomBuffer(kN * kN, 2))),
        c_(kN * kN),
        a_mem_(pd.src_desc(), engine_, a_.data()),
        b_mem_(pd.weights_desc(), engine_, b_.data()),
        c_mem_(pd.dst_desc(), engine_, c_.data()) {}

  void Run() override {
    try {
      matmul_.execute(stream_,
                      {{DNNL_ARG_SRC, a_mem_}, {DNNL_ARG_WEIGHTS, b_mem_}, {DNNL_ARG_DST, c_mem_}});
      stream_.wait();
    } catch (const dnnl::error& e) {
      // Created, so it ran once already; a later failure is a oneDNN bug.
      std::fprintf(stderr, "bf16 GEMM probe: %s\n", e.what());
      std::abort();
    }
  }

 private:
  static std::vector<uint16_t> ToBf16(const std::vector<float>& x) {
    std::vector<uint16_t> out(x.size());
    FloatToBfloat16(x.data(), out.data(), static_cast<int64_t>(x.size()));
    return out;
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::matmul matmul_;
  std::vector<uint16_t> a_, b_;
  std::vector<float> c_;
  dnnl::memory a_mem_, b_mem_, c_mem_;
};

}  // namespace

std::unique_ptr<GemmProbe> MakeF32GemmProbe() { return std::make_unique<F32GemmProbe>(); }

std::unique_ptr<GemmProbe> MakeBf16GemmProbe(std::string* note) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::memory::dims dims = {GemmProbe::kN, GemmProbe::kN};
  std::unique_ptr<GemmProbe> probe;
  std::string impl;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    const dnnl::matmul::desc desc(dnnl::memory::desc(dims, dt::bf16, tag::ab),
                                  dnnl::memory::desc(dims, dt::bf16, tag::ab),
                                  dnnl::memory::desc(dims, dt::f32, tag::ab));
    const dnnl::matmul::primitive_desc pd(desc, engine);
    impl = pd.impl_info_str();
    // The reference matmul loops in scalar code at a few GFLOP/s: no rate
    // to compare a bf16 path with, and seconds per probe run.
    if (impl.find("ref") == std::string::npos) {
      probe = std::make_unique<Bf16GemmProbe>(std::move(engine), pd);
    }
  } catch (const dnnl::error& e) {
    *note = std::string("oneDNN ") + OneDnnVersion() + " has no bf16 matmul on " + CpuIsa() + " (" +
            dnnl_status2str(e.status) + ")";
    return nullptr;
  }
  if (probe == nullptr) {
    *note = std::string("oneDNN ") + OneDnnVersion() + " has only its reference bf16 matmul (" +
            impl + ") on " + CpuIsa();
    return nullptr;
  }
  if (std::strcmp(internal::Kernels().isa, "avx2") == 0) {
    *note = "our kernels run at AVX2 (ATTN_ISA=avx2): bf16 GEMM treated as unavailable";
    return nullptr;
  }
  *note = "oneDNN matmul " + impl;
  return probe;
}

BandwidthProbe::BandwidthProbe() : buf_(kN, 1.0f) {}

void BandwidthProbe::Run() {
  float total = 0;
  const float* buf = buf_.data();
#pragma omp parallel reduction(+ : total)
  {
    // Four independent vector accumulators keep the loads, not the adds,
    // the bottleneck.
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
#pragma omp for schedule(static)
    for (size_t i = 0; i < kN; i += 32) {
      for (int a = 0; a < 4; ++a) acc[a] = _mm256_add_ps(acc[a], _mm256_loadu_ps(buf + i + 8 * a));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes,
                     _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (float x : lanes) total += x;
  }
  sink_ = total;
}

Roof RoofOf(double bytes, double flops, double bandwidth_gbs, double gemm_gflops,
            double measured_seconds) {
  const double bandwidth_seconds = bytes / (bandwidth_gbs * 1e9);
  const double gemm_seconds = flops / (gemm_gflops * 1e9);
  Roof roof;
  roof.bound = bandwidth_seconds >= gemm_seconds ? "bandwidth" : "gemm";
  roof.seconds = std::max(bandwidth_seconds, gemm_seconds);
  roof.fraction = roof.seconds / measured_seconds;
  return roof;
}

}  // namespace attention::bench
