// attention_bench: GFLOP/s of the attention kernel on the standard workloads,
// beside the machine's oneDNN float32 GEMM rate and memory bandwidth measured
// in the same run.
//
//   attention_bench [--threads N] [--filter SUBSTR] [--min_time SECONDS]
//                   [--decode_batch 8]
//   attention_bench --memory L    peak memory of single-head attention at
//                                 Lq = Lk = L, D = 64, without weights
//
// Then, per variant at d_model 4096 (32 query heads), whole-layer decode:
// one token per batch row after Lk = 4096 cached tokens, through
// DecodeSession and its paged KV cache, in tokens/s; and one whole-layer
// Forward of the server's demo-gqa shape at L = 2048 (the core's own time
// for the end-to-end figure of the load tester).
//
// Causal workloads count only visible (query, key) pairs (about half).
// Decode workloads also report the K/V bytes read per second, against the
// measured bandwidth: decode is memory-bound.
#include <immintrin.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/decode.h"
#include "core/paged_attention.h"
#include "core/process.h"
#include "core/sdpa.h"
#include "core/threading.h"
#include "core/workload.h"
#include "oneapi/dnnl/dnnl.h"

namespace attention {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t memory_l = 0;
  int threads = 0;
  std::string filter;
  double min_time = 1.0;
  int64_t decode_batch = 8;
};

// Seconds per run of fn, run until min_time has passed (at least 3 times,
// after one warm-up): the fastest and the median. Ratios compare fastest
// with fastest (workloads and the machine probes alike): on a shared
// machine the fastest run is what the hardware does, the median adds what
// neighbours took.
struct Timing {
  double best = 0, median = 0;
};

template <typename Fn>
Timing TimeRuns(Fn fn, double min_time) {
  fn();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 3 ||
         std::chrono::duration<double>(Clock::now() - start).count() < min_time) {
    const auto t0 = Clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (times.size() >= 10000) break;
  }
  std::sort(times.begin(), times.end());
  return {times.front(), times[times.size() / 2]};
}

template <typename Fn>
double TimeIt(Fn fn, double min_time) {
  return TimeRuns(fn, min_time).best;
}

std::vector<float> RandomBuffer(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : v) x = dist(gen);
  return v;
}

// oneDNN's sgemm on square float32 matrices: the machine's GEMM rate.
class GemmProbe {
 public:
  GemmProbe() : a_(RandomBuffer(kN * kN, 1)), b_(RandomBuffer(kN * kN, 2)), c_(kN * kN) {}
  void Run() {
    dnnl_sgemm('N', 'N', kN, kN, kN, 1.0f, a_.data(), kN, b_.data(), kN, 0.0f, c_.data(), kN);
  }
  static double Gflops(double seconds) { return 2.0 * kN * kN * kN / seconds / 1e9; }

 private:
  static constexpr int64_t kN = 1024;
  std::vector<float> a_, b_, c_;
};

// Read bandwidth over a buffer far larger than the caches, all threads.
class BandwidthProbe {
 public:
  BandwidthProbe() : buf_(kN, 1.0f) {}
  void Run() {
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
        for (int a = 0; a < 4; ++a)
          acc[a] = _mm256_add_ps(acc[a], _mm256_loadu_ps(buf + i + 8 * a));
      }
      float lanes[8];
      _mm256_storeu_ps(lanes,
                       _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
      for (float x : lanes) total += x;
    }
    sink_ = total;
  }
  static double GBs(double seconds) { return static_cast<double>(kN) * 4 / seconds / 1e9; }

 private:
  static constexpr size_t kN = size_t{256} << 20 >> 2;  // 256 MiB of floats
  std::vector<float> buf_;
  volatile float sink_ = 0;
};

// Runs a workload and the two probes in turn until min_time has passed, so
// all three see the same neighbours (this machine is shared: its free
// bandwidth changes by 2x from one second to the next). Fastest of each.
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
  auto seconds = [](auto f) {
    const auto t0 = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  const auto start = Clock::now();
  while (times.size() < 3 ||
         std::chrono::duration<double>(Clock::now() - start).count() < min_time) {
    times.push_back(seconds(fn));
    best_gemm = std::min(best_gemm, seconds([&] { gemm.Run(); }));
    best_bw = std::min(best_bw, seconds([&] { bw.Run(); }));
    if (times.size() >= 10000) break;
  }
  std::sort(times.begin(), times.end());
  return {{times.front(), times[times.size() / 2]},
          GemmProbe::Gflops(best_gemm),
          BandwidthProbe::GBs(best_bw)};
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// Layer configs of the variant comparison at d_model 4096.
std::vector<std::pair<std::string, ModuleConfig>> DecodeVariants() {
  ModuleConfig mha;
  mha.variant = Variant::kMha;
  mha.d_model = 4096;
  mha.num_heads = 32;
  mha.bias = false;
  ModuleConfig gqa = mha;
  gqa.variant = Variant::kGqa;
  gqa.num_kv_heads = 8;
  ModuleConfig mqa = mha;
  mqa.variant = Variant::kMqa;
  ModuleConfig mla = mha;
  mla.variant = Variant::kMla;
  mla.q_lora_rank = 1536;
  mla.kv_lora_rank = 512;
  mla.qk_nope_head_dim = 128;
  mla.qk_rope_head_dim = 64;
  mla.v_head_dim = 128;
  return {{"mha_h32", mha}, {"gqa_h32kv8", gqa}, {"mqa_h32", mqa}, {"mla_h32_r512", mla}};
}

// The core's own time for the end-to-end row of the performance issue: a
// causal self-attention Forward of the server's demo-gqa layer (d_model 512,
// 8 query / 2 kv heads, biases) on [1, 2048, 512], in process: what the
// server's timing.compute_us measures for the same call, less conversion.
int RunLayerForward(const Options& opt) {
  ModuleConfig config;
  config.variant = Variant::kGqa;
  config.d_model = 512;
  config.num_heads = 8;
  config.num_kv_heads = 2;
  auto module = AttentionModule::CreateRandom(config, 3);
  if (!module.ok()) return 1;
  const int64_t b = 1, l = 2048;
  const Tensor x({b, l, config.d_model}, RandomBuffer(b * l * config.d_model, 7));
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  std::vector<float> out(static_cast<size_t>(b * l * config.d_model));
  in.output = out.data();  // as the server does: into the response's buffer
  absl::Status status;
  const Timing t = TimeRuns([&] { status = (*module)->Forward(in).status(); }, opt.min_time);
  if (!status.ok()) {
    std::fprintf(stderr, "layer forward: %s\n", status.ToString().c_str());
    return 1;
  }
  const double flops = LayerFlops(config, b, l, l, l, true, MlaForm::kNaive);
  std::printf(
      "\n## layer forward (demo-gqa: d_model 512, 8 / 2 heads), B = 1, L = 2048, causal\n\n");
  std::printf("| layer | ms | median ms | GFLOP/s |\n|---|---:|---:|---:|\n");
  std::printf("| forward_gqa_d512_l2048_causal | %.3f | %.3f | %.1f |\n", t.best * 1e3,
              t.median * 1e3, flops / t.best / 1e9);
  std::fflush(stdout);
  return 0;
}

// Whole-layer decode steps and the attention of one step alone
// (PagedSdpa over the stream's cache), in each KV-cache dtype.
int RunDecode(const Options& opt, double bandwidth) {
  const int64_t lk = 4096, batch = opt.decode_batch;
  std::printf("\n## layer decode, d_model 4096, B = %lld, one token per row after %lld cached\n\n",
              static_cast<long long>(batch), static_cast<long long>(lk));
  std::printf(
      "Per KV-cache dtype: the whole layer's step, and its attention alone (PagedSdpa "
      "over the paged cache; KV GB/s of stored bytes; vs f32: the attention's speed "
      "over the f32 cache's in this run).\n\n");
  std::printf(
      "| variant | KV dtype | KV bytes/token | KV cache MiB | layer ms/step | layer "
      "tokens/s | attention ms | attention KV GB/s | attention vs bandwidth | attention "
      "vs f32 |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [name, base] : DecodeVariants()) {
    if (!opt.filter.empty() && name.find(opt.filter) == std::string::npos &&
        std::string("decode").find(opt.filter) == std::string::npos) {
      continue;
    }
    double f32_attention = 0;
    for (const DType kv : {DType::kFloat32, DType::kBfloat16, DType::kFloat16, DType::kInt8}) {
      ModuleConfig config = base;
      config.kv_cache_dtype = kv;
      auto module = AttentionModule::CreateRandom(config, 1);
      const int64_t per_token = KvCacheBytesPerToken(config);
      auto pool =
          KvBlockPool::Create(per_token * batch * (lk + 64) + (int64_t{64} << 20), 64 << 10);
      if (!module.ok() || !pool.ok()) return 1;
      std::shared_ptr<const AttentionModule> m = std::move(*module);
      auto session = DecodeSession::Create(m, batch, 0, pool->get());
      if (!session.ok()) return 1;
      // Fill the cache with lk tokens of small random values (contents do
      // not change the cost), then time single-token steps, resetting the
      // length.
      PagedKvCache& cache = (*session)->mutable_cache();
      if (!cache.Reserve(lk + 1).ok()) return 1;
      const KvLayout& layout = cache.layout();
      std::mt19937 gen(1);
      std::uniform_real_distribution<float> dist(-0.1f, 0.1f);
      std::vector<float> row(static_cast<size_t>(std::max(layout.k_width, layout.v_width)));
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t h = 0; h < layout.heads; ++h)
          for (int64_t t = 0; t < lk; ++t) {
            for (float& x : row) x = dist(gen);
            cache.StoreK(b, h, t, row.data());
            if (!layout.v_in_k) cache.StoreV(b, h, t, row.data());
          }
      cache.Advance(lk);
      const auto x = RandomBuffer(batch * config.d_model, 5);
      Tensor tokens({batch, 1, config.d_model}, x);
      absl::Status status;
      const double t = TimeIt(
          [&] {
            status = (*session)->Step(tokens).status();
            cache.Advance(-1);  // keep Lk fixed
          },
          opt.min_time);
      // The attention alone: one query row per head over the lk cached.
      const int64_t hq = NumQueryHeads(config);
      const std::vector<float> q = RandomBuffer(batch * hq * layout.k_width, 6);
      std::vector<float> out(static_cast<size_t>(batch * hq * layout.v_width));
      const double ta = TimeIt(
          [&] {
            if (status.ok()) {
              status = PagedSdpa(View4::Dense(q.data(), batch, hq, 1, layout.k_width), cache, 0.05f,
                                 MutView4::Dense(out.data(), batch, hq, 1, layout.v_width));
            }
          },
          opt.min_time);
      if (!status.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), status.ToString().c_str());
        return 1;
      }
      if (kv == DType::kFloat32) f32_attention = ta;
      const double kv_bytes = static_cast<double>(per_token) * batch * lk;
      std::printf("| %s | %s | %lld | %.0f | %.2f | %.0f | %.3f | %.1f | %.0f%% | %.2fx |\n",
                  name.c_str(), DTypeName(kv), static_cast<long long>(per_token),
                  kv_bytes / 1048576.0, t * 1e3, batch / t, ta * 1e3, kv_bytes / ta / 1e9,
                  100 * kv_bytes / ta / 1e9 / bandwidth, f32_attention / ta);
      std::fflush(stdout);
    }
  }
  return 0;
}

// Peak resident memory of the process, bytes (Linux reports KiB).
int64_t PeakRss() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// The memory claim of the performance issue: attention over L = 16384 keys
// must not materialise the L × L score matrix (1 GiB at float32).
int RunMemory(int64_t l) {
  const int64_t d = 64;
  std::vector<float> q = RandomBuffer(l * d, 1), k = RandomBuffer(l * d, 2),
                     v = RandomBuffer(l * d, 3), out(l * d);
  std::fill(out.begin(), out.end(), 0.0f);  // touch every page
  const int64_t before = PeakRss();
  const auto t0 = Clock::now();
  const absl::Status s =
      Sdpa(View4::Dense(q.data(), 1, 1, l, d), View4::Dense(k.data(), 1, 1, l, d),
           View4::Dense(v.data(), 1, 1, l, d), MaskSpec{}, 0.0f,
           MutView4::Dense(out.data(), 1, 1, l, d), nullptr);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const int64_t after = PeakRss();
  std::printf("single head, Lq = Lk = %lld, D = %lld, no weights, %d threads\n",
              static_cast<long long>(l), static_cast<long long>(d), ComputeThreads());
  std::printf("inputs + output: %.1f MiB; peak RSS before: %.1f MiB, after: %.1f MiB\n",
              4.0 * l * d * 4 / 1048576.0, before / 1048576.0, after / 1048576.0);
  std::printf(
      "peak RSS above the inputs: %.1f MiB (the full score matrix would be %.0f MiB); "
      "%.1f ms, %.1f GFLOP/s\n",
      (after - before) / 1048576.0, 4.0 * l * l / 1048576.0, secs * 1e3,
      SdpaFlops(1, 1, l, l, d, d, false) / secs / 1e9);
  return 0;
}

int Run(const Options& opt) {
  // As the server does (core/process.h): the layers' megabyte buffers would
  // otherwise page-fault in on every call, which on this machine more than
  // doubles a 2048-token Forward (60 → 25 ms).
  RetainFreedHeap(1024);
  if (opt.threads > 0) SetComputeThreads(opt.threads);
  if (opt.memory_l > 0) return RunMemory(opt.memory_l);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d", std::gmtime(&now));
  std::printf("# attention_bench\n");
  std::printf("cpu: %s\nthreads: %d\nonednn: %s (isa %s)\ndate: %s\n", CpuModel().c_str(),
              ComputeThreads(), OneDnnVersion(), CpuIsa(), date);
  GemmProbe gemm_probe;
  BandwidthProbe bw_probe;
  const double gemm = GemmProbe::Gflops(TimeIt([&] { gemm_probe.Run(); }, opt.min_time));
  const double bw = BandwidthProbe::GBs(TimeIt([&] { bw_probe.Run(); }, opt.min_time));
  std::printf("onednn_sgemm_1024: %.1f GFLOP/s\nread_bandwidth: %.1f GB/s\n", gemm, bw);
  std::printf(
      "(fastest runs. Each row times its workload alternating with the GEMM and\n"
      "bandwidth probes, whose rates in that window it is compared with; the median\n"
      "workload time is in the last column)\n\n");
  std::printf(
      "| workload | ms | GFLOP/s | GEMM GFLOP/s | vs GEMM | KV GB/s | bandwidth GB/s | "
      "vs bandwidth | median ms |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Workload& w : StandardWorkloads()) {
    if (!opt.filter.empty() && w.name.find(opt.filter) == std::string::npos) continue;
    const auto q = RandomBuffer(w.b * w.hq * w.lq * w.dk, 1);
    const auto k = RandomBuffer(w.b * w.hkv * w.lk * w.dk, 2);
    const auto v =
        w.value_in_key ? std::vector<float>() : RandomBuffer(w.b * w.hkv * w.lk * w.dv, 3);
    std::vector<float> out(w.b * w.hq * w.lq * w.dv);
    const View4 qv = View4::Dense(q.data(), w.b, w.hq, w.lq, w.dk);
    const View4 kv = View4::Dense(k.data(), w.b, w.hkv, w.lk, w.dk);
    View4 vv = View4::Dense(v.data(), w.b, w.hkv, w.lk, w.dv);
    if (w.value_in_key) {  // MLA: values are the first Dv columns of the latent key
      vv = kv;
      vv.dims[3] = w.dv;
    }
    MaskSpec mask;
    mask.causal = w.causal;
    const MutView4 ov = MutView4::Dense(out.data(), w.b, w.hq, w.lq, w.dv);
    absl::Status status;
    const Interleaved run =
        TimeInterleaved([&] { status = Sdpa(qv, kv, vv, mask, 0.0f, ov, nullptr); }, gemm_probe,
                        bw_probe, opt.min_time);
    const Timing& timing = run.workload;
    const double t = timing.best;
    if (!status.ok()) {
      std::fprintf(stderr, "%s: %s\n", w.name.c_str(), status.ToString().c_str());
      return 1;
    }
    const double gflops = w.Flops() / t / 1e9;
    const bool decode = w.lq == 1;
    const double kv_gbs = w.KvBytes() / t / 1e9;
    if (decode) {
      std::printf("| %s | %.3f | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.0f%% | %.3f |\n",
                  w.name.c_str(), t * 1e3, gflops, run.gemm_gflops, 100 * gflops / run.gemm_gflops,
                  kv_gbs, run.bandwidth_gbs, 100 * kv_gbs / run.bandwidth_gbs, timing.median * 1e3);
    } else {
      std::printf("| %s | %.3f | %.1f | %.1f | %.0f%% | | | | %.3f |\n", w.name.c_str(), t * 1e3,
                  gflops, run.gemm_gflops, 100 * gflops / run.gemm_gflops, timing.median * 1e3);
    }
    std::fflush(stdout);
  }
  if (const int rc = RunDecode(opt, bw); rc != 0) return rc;
  if (!opt.filter.empty() && std::string("forward").find(opt.filter) == std::string::npos) return 0;
  return RunLayerForward(opt);
}

}  // namespace
}  // namespace attention

int main(int argc, char** argv) {
  attention::Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string(name) + "=";
      if (arg.rfind(prefix, 0) == 0) return argv[i] + prefix.size();
      if (arg == name && i + 1 < argc) return argv[++i];
      return nullptr;
    };
    if (const char* v = value("--threads")) {
      opt.threads = std::atoi(v);
    } else if (const char* f = value("--filter")) {
      opt.filter = f;
    } else if (const char* m = value("--min_time")) {
      opt.min_time = std::atof(m);
    } else if (const char* ml = value("--memory")) {
      opt.memory_l = std::atoll(ml);
    } else if (const char* db = value("--decode_batch")) {
      opt.decode_batch = std::atoll(db);
    } else {
      std::fprintf(stderr,
                   "usage: attention_bench [--threads N] [--filter SUBSTR] [--min_time SECONDS] "
                   "[--decode_batch B]\n");
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  return attention::Run(opt);
}
