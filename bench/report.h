// What attention_bench measured, and its two ways of printing it: markdown
// tables as the rows come (the default), or one JSON object at the end
// (--json; the schema is in docs/PERFORMANCE.md, and scripts read its keys).
#ifndef ATTENTION_BENCH_REPORT_H_
#define ATTENTION_BENCH_REPORT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "bench/probes.h"
#include "core/dtype.h"
#include "core/workload.h"

namespace attention::bench {

// "f32", "bf16", "f16" or "int8": the bench's short dtype names.
const char* ShortDTypeName(DType dtype);

struct MachineInfo {
  std::string cpu;      // /proc/cpuinfo's model name
  std::string isa;      // oneDNN's (CpuIsa())
  std::string kernels;  // our kernels' table ("avx2" or "avx512")
  int threads = 0;
  std::string onednn;  // oneDNN's version
  std::string date;    // UTC, YYYY-MM-DD
};

// The probes' rates over the whole of min_time, before the workloads.
struct ProbeRates {
  double gemm_f32_gflops = 0;
  std::optional<double> gemm_bf16_gflops;  // empty: no bf16 GEMM here
  std::string gemm_bf16_note;              // why empty, or oneDNN's implementation
  double bandwidth_gbs = 0;
};

// One standard workload in one compute dtype. The probe rates are those of
// its own window (TimeInterleaved); gemm_gflops is the rate of its dtype's
// GEMM (the f32 rate for a bf16 row where bf16 GEMM is unavailable).
struct WorkloadRow {
  Workload workload;
  DType compute = DType::kFloat32;
  Timing timing;
  double gflops = 0, kv_gbs = 0;
  double gemm_gflops = 0, bandwidth_gbs = 0;
  Roof roof;
};

// One decode step of a whole layer, and its attention alone, in one KV
// cache dtype and one compute dtype.
struct DecodeRow {
  std::string variant;
  DType kv_dtype = DType::kFloat32, compute = DType::kFloat32;
  int64_t kv_bytes_per_token = 0;
  double kv_cache_mib = 0;
  double layer_seconds = 0, layer_tokens_per_s = 0;
  double attention_seconds = 0, attention_kv_gbs = 0;
  double gemm_gflops = 0, bandwidth_gbs = 0;  // the attention's window
  Roof attention_roof;
  double attention_vs_f32 = 0;  // the all-f32 row's attention time over this one's
  double layer_vs_f32 = 0;      // this row's layer tokens/s over the all-f32 row's
};

// Decode steps of a layer with a sliding window W at one position of its
// stream (tokens cached when the timing starts; each timed step appends
// one more), timed alternately with the other positions' rows.
struct WindowDecodeRow {
  std::string variant;
  int64_t batch = 0, window = 0, position = 0;
  double kv_held_mib = 0;      // the stream's blocks (blocks_held · block bytes)
  double kv_appended_mib = 0;  // position · B · bytes per token: a cache without the window
  Timing layer;                // seconds per step
  double layer_tokens_per_s = 0;
  Timing attention;  // the step's attention alone (PagedSdpa over the cache)
  // This row's layer tokens/s (attention speed) over the first row's.
  double layer_vs_first = 0, attention_vs_first = 0;
};

struct ForwardRow {
  std::string name;
  DType compute = DType::kFloat32;
  Timing timing;
  double gflops = 0;
};

// Receives the rows in the order the bench measures them.
class Report {
 public:
  virtual ~Report() = default;
  virtual void Begin(const MachineInfo& machine, const ProbeRates& probes) = 0;
  virtual void AddWorkload(const WorkloadRow& row) = 0;
  virtual void BeginDecode(int64_t batch, int64_t lk) = 0;
  virtual void AddDecode(const DecodeRow& row) = 0;
  virtual void AddWindowDecode(const WindowDecodeRow& row) = 0;
  virtual void AddForward(const ForwardRow& row) = 0;
  // Prints what is still to print; returns false if stdout failed.
  virtual bool End() = 0;
};

std::unique_ptr<Report> MakeMarkdownReport();
// Progress lines go to stderr; stdout gets the object alone, at End.
std::unique_ptr<Report> MakeJsonReport();

}  // namespace attention::bench

#endif  // ATTENTION_BENCH_REPORT_H_
