// attention_bench: the attention kernel on the standard workloads
// (core/workload.h), beside the machine's oneDNN GEMM rates (float32 and
// bfloat16) and read bandwidth measured in the same run, and how close each
// row comes to the lower of its two roofs (bench/probes.h).
//
//   attention_bench [--threads N] [--filter SUBSTR] [--min_time SECONDS]
//                   [--decode_batch 8] [--dtype f32|bf16|all] [--json]
//   attention_bench --memory L    peak memory of single-head attention at
//                                 Lq = Lk = L, D = 64, without weights
//
// Then, per variant at d_model 4096 (32 query heads), whole-layer decode:
// one token per batch row after Lk = 4096 cached tokens, through
// DecodeSession and its paged KV cache, per KV-cache dtype, in tokens/s,
// and the step's attention alone; and one whole-layer Forward of the
// server's demo-gqa shape at L = 2048 (the core's own time for the
// end-to-end figure of the load tester). Also a gqa layer with a sliding
// window of 4096 keys decoded at positions 2W and 16W of its stream
// (--filter window: that alone): equal speed, since it reads W keys.
//
// --json prints one JSON object instead of the markdown tables (schema:
// docs/PERFORMANCE.md); progress then goes to stderr.
//
// Causal workloads count only visible (query, key) pairs (about half).
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/layer_bench.h"
#include "bench/options.h"
#include "bench/probes.h"
#include "bench/report.h"
#include "core/dtype.h"
#include "core/internal/kernels.h"
#include "core/process.h"
#include "core/sdpa.h"
#include "core/threading.h"
#include "core/workload.h"

namespace attention::bench {
namespace {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

MachineInfo Machine() {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d", std::gmtime(&now));
  return {CpuModel(), CpuIsa(), internal::Kernels().isa, ComputeThreads(), OneDnnVersion(), date};
}

// One standard workload in one compute dtype.
absl::StatusOr<WorkloadRow> MeasureWorkload(const Workload& w, DType compute, Probes& probes,
                                            double min_time) {
  const auto q = RandomBuffer(w.b * w.hq * w.lq * w.dk, 1);
  const auto k = RandomBuffer(w.b * w.hkv * w.lk * w.dk, 2);
  const auto v = w.value_in_key ? std::vector<float>() : RandomBuffer(w.b * w.hkv * w.lk * w.dv, 3);
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
  // bf16 rows: the operands held in bf16 (converted before the timing, as
  // a bf16 model or cache holds them), through SdpaBf16.
  const bool bf16 = compute == DType::kBfloat16;
  auto to_bf16 = [&](const std::vector<float>& x) {
    std::vector<uint16_t> y(bf16 ? x.size() : 0);
    if (bf16) FloatToBfloat16(x.data(), y.data(), static_cast<int64_t>(x.size()));
    return y;
  };
  const std::vector<uint16_t> q16 = to_bf16(q), k16 = to_bf16(k), v16 = to_bf16(v);
  const Bf16View4 q16v = Bf16View4::Dense(q16.data(), w.b, w.hq, w.lq, w.dk);
  const Bf16View4 k16v = Bf16View4::Dense(k16.data(), w.b, w.hkv, w.lk, w.dk);
  Bf16View4 v16v = Bf16View4::Dense(v16.data(), w.b, w.hkv, w.lk, w.dv);
  if (w.value_in_key) {
    v16v = k16v;
    v16v.dims[3] = w.dv;
  }
  absl::Status status;
  const Interleaved run = TimeInterleaved(
      [&] {
        status = bf16 ? SdpaBf16(q16v, k16v, v16v, mask, 0.0f, ov, nullptr)
                      : Sdpa(qv, kv, vv, mask, 0.0f, ov, nullptr);
      },
      probes.For(compute), probes.bandwidth, min_time);
  if (!status.ok()) return status;
  WorkloadRow row;
  row.workload = w;
  row.compute = compute;
  row.timing = run.workload;
  // K, V and Q as stored (2 bytes in bf16); the output is float32.
  const double element = bf16 ? 2.0 : 4.0;
  const double kv_bytes = w.KvBytes() / 4.0 * element;
  row.gflops = w.Flops() / row.timing.best / 1e9;
  row.kv_gbs = kv_bytes / row.timing.best / 1e9;
  row.gemm_gflops = run.gemm_gflops;
  row.bandwidth_gbs = run.bandwidth_gbs;
  const double q_and_output =
      static_cast<double>(w.b * w.hq * w.lq) * (element * w.dk + 4.0 * w.dv);
  row.roof = RoofOf(kv_bytes + q_and_output, w.Flops(), run.bandwidth_gbs, run.gemm_gflops,
                    row.timing.best);
  return row;
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
  std::unique_ptr<Report> report = opt.json ? MakeJsonReport() : MakeMarkdownReport();
  Probes probes;
  ProbeRates rates;
  probes.f32 = MakeF32GemmProbe();
  probes.bf16 = MakeBf16GemmProbe(&rates.gemm_bf16_note);
  rates.gemm_f32_gflops =
      GemmProbe::Gflops(TimeRuns([&] { probes.f32->Run(); }, opt.min_time).best);
  if (probes.bf16 != nullptr) {
    rates.gemm_bf16_gflops =
        GemmProbe::Gflops(TimeRuns([&] { probes.bf16->Run(); }, opt.min_time).best);
  }
  rates.bandwidth_gbs =
      BandwidthProbe::GBs(TimeRuns([&] { probes.bandwidth.Run(); }, opt.min_time).best);
  report->Begin(Machine(), rates);
  for (const DType compute : {DType::kFloat32, DType::kBfloat16}) {
    if (!Wants(opt, compute)) continue;
    for (const Workload& w : StandardWorkloads()) {
      if (!opt.filter.empty() && w.name.find(opt.filter) == std::string::npos) continue;
      absl::StatusOr<WorkloadRow> row = MeasureWorkload(w, compute, probes, opt.min_time);
      if (!row.ok()) {
        std::fprintf(stderr, "%s (%s): %s\n", w.name.c_str(), ShortDTypeName(compute),
                     row.status().ToString().c_str());
        return 1;
      }
      report->AddWorkload(*row);
    }
  }
  if (const int rc = RunLayerDecode(opt, probes, *report); rc != 0) return rc;
  if (const int rc = RunWindowDecode(opt, *report); rc != 0) return rc;
  if (opt.filter.empty() || std::string("forward").find(opt.filter) != std::string::npos) {
    if (const int rc = RunLayerForward(opt, *report); rc != 0) return rc;
  }
  return report->End() ? 0 : 1;
}

bool ParseDTypes(const std::string& value, std::vector<DType>* dtypes) {
  if (value == "f32") {
    *dtypes = {DType::kFloat32};
  } else if (value == "bf16") {
    *dtypes = {DType::kBfloat16};
  } else if (value == "all") {
    *dtypes = {DType::kFloat32, DType::kBfloat16};
  } else {
    return false;
  }
  return true;
}

constexpr char kUsage[] =
    "usage: attention_bench [--threads N] [--filter SUBSTR] [--min_time SECONDS] "
    "[--decode_batch B] [--dtype f32|bf16|all] [--json]\n"
    "       attention_bench --memory L\n";

}  // namespace
}  // namespace attention::bench

int main(int argc, char** argv) {
  attention::bench::Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string(name) + "=";
      if (arg.rfind(prefix, 0) == 0) return argv[i] + prefix.size();
      if (arg == name && i + 1 < argc) return argv[++i];
      return nullptr;
    };
    if (arg == "--json") {
      opt.json = true;
    } else if (const char* v = value("--threads")) {
      opt.threads = std::atoi(v);
    } else if (const char* f = value("--filter")) {
      opt.filter = f;
    } else if (const char* m = value("--min_time")) {
      opt.min_time = std::atof(m);
    } else if (const char* ml = value("--memory")) {
      opt.memory_l = std::atoll(ml);
    } else if (const char* db = value("--decode_batch")) {
      opt.decode_batch = std::atoll(db);
    } else if (const char* dt = value("--dtype")) {
      if (!attention::bench::ParseDTypes(dt, &opt.dtypes)) {
        std::fprintf(stderr, "attention_bench: --dtype must be f32, bf16 or all, got %s\n", dt);
        return 2;
      }
    } else {
      std::fprintf(stderr, "%s", attention::bench::kUsage);
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  if (opt.json && opt.memory_l > 0) {
    std::fprintf(stderr, "attention_bench: --memory prints text only; drop --json\n");
    return 2;
  }
  return attention::bench::Run(opt);
}
