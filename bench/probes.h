// The machine's own rates, measured in the same run as the workloads they
// are compared with: oneDNN's GEMM in float32 and in bfloat16, and the read
// bandwidth of all threads. Also the timing loops the bench shares.
//
// This machine is shared: its free bandwidth and GEMM rate change by up to
// 2x from one second to the next, so a workload is compared only with the
// probes run in its own window (TimeInterleaved), fastest with fastest.
#ifndef ATTENTION_BENCH_PROBES_H_
#define ATTENTION_BENCH_PROBES_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace attention::bench {

using Clock = std::chrono::steady_clock;

// Seconds per run: the fastest and the median. On a shared machine the
// fastest run is what the hardware does, the median adds what neighbours
// took.
struct Timing {
  double best = 0, median = 0;
};

template <typename Fn>
double Seconds(Fn fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs fn until min_time has passed (at least 3 times, after one warm-up).
template <typename Fn>
Timing TimeRuns(Fn fn, double min_time) {
  fn();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 3 ||
         std::chrono::duration<double>(Clock::now() - start).count() < min_time) {
    times.push_back(Seconds(fn));
    if (times.size() >= 10000) break;
  }
  std::sort(times.begin(), times.end());
  return {times.front(), times[times.size() / 2]};
}

std::vector<float> RandomBuffer(size_t n, uint32_t seed);

// A square GEMM (1024³) on oneDNN: the machine's matrix rate in one dtype.
class GemmProbe {
 public:
  virtual ~GemmProbe() = default;
  // The matrices' side.
  static constexpr int64_t kN = 1024;

  virtual void Run() = 0;
  static double Gflops(double seconds) { return 2.0 * kN * kN * kN / seconds / 1e9; }
};

// oneDNN's sgemm, float32 in and out.
std::unique_ptr<GemmProbe> MakeF32GemmProbe();

// oneDNN's matmul with bfloat16 source and weights, float32 destination
// (what a bf16 compute path's GEMMs do). oneDNN 2.6 has no bf16 matmul
// below AVX-512 (creation fails with `unimplemented`), and only a reference
// one on some AVX-512 CPUs; then null, and `note` says why. When it exists,
// `note` names oneDNN's implementation. Also null when our own kernels run
// at AVX2 (ATTN_ISA=avx2): a bf16 row then runs beside AVX2 kernels, and
// the probe would describe a machine the row does not use.
std::unique_ptr<GemmProbe> MakeBf16GemmProbe(std::string* note);

// Read bandwidth over a buffer far larger than the caches, all threads.
class BandwidthProbe {
 public:
  BandwidthProbe();
  void Run();
  static double GBs(double seconds) { return static_cast<double>(kN) * 4 / seconds / 1e9; }

 private:
  static constexpr size_t kN = size_t{256} << 20 >> 2;  // 256 MiB of floats
  std::vector<float> buf_;
  volatile float sink_ = 0;
};

// A workload timed alternating with a GEMM probe and the bandwidth probe
// until min_time has passed, so that all three see the same neighbours.
// Fastest of each.
struct Interleaved {
  Timing workload;
  double gemm_gflops = 0, bandwidth_gbs = 0;
};

template <typename Fn>
Interleaved TimeInterleaved(Fn fn, GemmProbe& gemm, BandwidthProbe& bw, double min_time) {
  fn();
  gemm.Run();
  bw.Run();
  std::vector<double> times;
  double best_gemm = 1e30, best_bw = 1e30;
  const auto start = Clock::now();
  while (times.size() < 3 ||
         std::chrono::duration<double>(Clock::now() - start).count() < min_time) {
    times.push_back(Seconds(fn));
    best_gemm = std::min(best_gemm, Seconds([&] { gemm.Run(); }));
    best_bw = std::min(best_bw, Seconds([&] { bw.Run(); }));
    if (times.size() >= 10000) break;
  }
  std::sort(times.begin(), times.end());
  return {{times.front(), times[times.size() / 2]},
          GemmProbe::Gflops(best_gemm),
          BandwidthProbe::GBs(best_bw)};
}

// The lower of two roofs for a run: the time its bytes take at the measured
// bandwidth, or its FLOPs at the measured GEMM rate, whichever is longer
// (the binding one); `fraction` is that time over the measured time.
struct Roof {
  const char* bound = "";  // "bandwidth" or "gemm"
  double seconds = 0;
  double fraction = 0;
};
Roof RoofOf(double bytes, double flops, double bandwidth_gbs, double gemm_gflops,
            double measured_seconds);

// The probes of a run: built once, reused by every row.
struct Probes {
  std::unique_ptr<GemmProbe> f32, bf16;  // bf16 null where unavailable
  BandwidthProbe bandwidth;

  // The GEMM a row computing in `compute` is compared with: its own
  // dtype's, else the f32 one.
  GemmProbe& For(DType compute) {
    return compute == DType::kBfloat16 && bf16 != nullptr ? *bf16 : *f32;
  }
};

}  // namespace attention::bench

#endif  // ATTENTION_BENCH_PROBES_H_
