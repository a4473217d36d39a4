#include "bench/report.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <utility>

namespace attention::bench {

const char* ShortDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "f32";
    case DType::kBfloat16:
      return "bf16";
    case DType::kFloat16:
      return "f16";
    case DType::kInt8:
      return "int8";
    case DType::kBool:
      return "bool";
  }
  return "?";
}

namespace {

class MarkdownReport : public Report {
 public:
  void Begin(const MachineInfo& machine, const ProbeRates& probes) override {
    std::printf("# attention_bench\n");
    std::printf("cpu: %s\nthreads: %d\nonednn: %s (isa %s)\nkernels: %s\ndate: %s\n",
                machine.cpu.c_str(), machine.threads, machine.onednn.c_str(), machine.isa.c_str(),
                machine.kernels.c_str(), machine.date.c_str());
    std::printf("onednn_sgemm_1024: %.1f GFLOP/s\n", probes.gemm_f32_gflops);
    if (probes.gemm_bf16_gflops) {
      std::printf("onednn_bf16_matmul_1024: %.1f GFLOP/s (%s)\n", *probes.gemm_bf16_gflops,
                  probes.gemm_bf16_note.c_str());
    } else {
      std::printf("onednn_bf16_matmul_1024: unavailable (%s)\n", probes.gemm_bf16_note.c_str());
    }
    std::printf("read_bandwidth: %.1f GB/s\n", probes.bandwidth_gbs);
    std::printf(
        "(fastest runs. Each row times its workload alternating with the GEMM probe of its\n"
        "dtype and the bandwidth probe, and compares it with their rates in that window.\n"
        "roof: the binding one of two lower bounds on the row's time, its bytes (K and V as\n"
        "stored, Q and the output) at that bandwidth or its FLOPs at that GEMM rate; vs roof:\n"
        "that bound over the measured time. bf16 rows: SdpaBf16 on Q, K and V held in bf16\n"
        "(2 bytes each), against the bf16 GEMM rate%s)\n\n",
        probes.gemm_bf16_gflops ? "" : ", here the f32 one: no bf16 GEMM on this machine");
    std::printf(
        "| workload | dtype | ms | median ms | GFLOP/s | GEMM GFLOP/s | vs GEMM | KV GB/s | "
        "bandwidth GB/s | vs bandwidth | roof | vs roof |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    std::fflush(stdout);
  }

  void AddWorkload(const WorkloadRow& row) override {
    const Workload& w = row.workload;
    std::printf("| %s | %s | %.3f | %.3f | %.1f | %.1f | %.0f%% | ", w.name.c_str(),
                ShortDTypeName(row.compute), row.timing.best * 1e3, row.timing.median * 1e3,
                row.gflops, row.gemm_gflops, 100 * row.gflops / row.gemm_gflops);
    // K/V bytes per second say something only where K and V are read once
    // per query row, in decode.
    if (w.lq == 1) {
      std::printf("%.1f | %.1f | %.0f%% | ", row.kv_gbs, row.bandwidth_gbs,
                  100 * row.kv_gbs / row.bandwidth_gbs);
    } else {
      std::printf(" | %.1f | | ", row.bandwidth_gbs);
    }
    std::printf("%s | %.0f%% |\n", row.roof.bound, 100 * row.roof.fraction);
    std::fflush(stdout);
  }

  void BeginDecode(int64_t batch, int64_t lk) override {
    std::printf(
        "\n## layer decode, d_model 4096, B = %lld, one token per row after %lld cached\n\n",
        static_cast<long long>(batch), static_cast<long long>(lk));
    std::printf(
        "Per KV-cache dtype and compute dtype (compute bf16: the module holds its weights in "
        "bf16): the whole layer's step (layer vs f32: its "
        "tokens/s over the all-f32 row's), and its attention alone (PagedSdpa over the paged "
        "cache, timed alternating with the probes; KV GB/s of stored bytes; roof and vs roof as "
        "above; vs f32: the attention's speed over the all-f32 row's).\n\n");
    std::printf(
        "| variant | KV dtype | compute | KV bytes/token | KV cache MiB | layer ms/step | layer "
        "tokens/s | layer vs f32 | attention ms | attention KV GB/s | attention vs bandwidth | "
        "attention roof | attention vs roof | attention vs f32 |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
    std::fflush(stdout);
  }

  void AddDecode(const DecodeRow& row) override {
    std::printf(
        "| %s | %s | %s | %lld | %.0f | %.2f | %.0f | %.2fx | %.3f | %.1f | %.0f%% | %s | %.0f%% | "
        "%.2fx |\n",
        row.variant.c_str(), ShortDTypeName(row.kv_dtype), ShortDTypeName(row.compute),
        static_cast<long long>(row.kv_bytes_per_token), row.kv_cache_mib, row.layer_seconds * 1e3,
        row.layer_tokens_per_s, row.layer_vs_f32, row.attention_seconds * 1e3, row.attention_kv_gbs,
        100 * row.attention_kv_gbs / row.bandwidth_gbs, row.attention_roof.bound,
        100 * row.attention_roof.fraction, row.attention_vs_f32);
    std::fflush(stdout);
  }

  void AddWindowDecode(const WindowDecodeRow& row) override {
    if (!window_begun_) {
      std::printf(
          "\n## windowed decode, d_model 4096, sliding window W = %lld, B = %lld, one token per "
          "row at two positions\n\n",
          static_cast<long long>(row.window), static_cast<long long>(row.batch));
      std::printf(
          "The stream's cache filled to the position without computing (dropping behind the "
          "window as the layer does), then single-token steps timed alternately at each position "
          "(each step appends one more token); attention: PagedSdpa alone over the same caches, "
          "alternated likewise. vs first: tokens/s (attention speed) over the first row's.\n\n");
      std::printf(
          "| variant | position | KV held MiB | KV appended MiB | layer ms/step | median ms | "
          "layer tokens/s | layer vs first | attention ms | attention median ms | "
          "attention vs first |\n");
      std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
      window_begun_ = true;
    }
    std::printf("| %s | %lld | %.1f | %.0f | %.2f | %.2f | %.1f | %.2fx | %.3f | %.3f | %.2fx |\n",
                row.variant.c_str(), static_cast<long long>(row.position), row.kv_held_mib,
                row.kv_appended_mib, row.layer.best * 1e3, row.layer.median * 1e3,
                row.layer_tokens_per_s, row.layer_vs_first, row.attention.best * 1e3,
                row.attention.median * 1e3, row.attention_vs_first);
    std::fflush(stdout);
  }

  void AddForward(const ForwardRow& row) override {
    if (!forward_begun_) {
      std::printf(
          "\n## layer forward (demo-gqa: d_model 512, 8 / 2 heads), B = 1, L = 2048, "
          "causal\n\n");
      std::printf("| layer | compute | ms | median ms | GFLOP/s |\n|---|---|---:|---:|---:|\n");
      forward_begun_ = true;
    }
    std::printf("| %s | %s | %.3f | %.3f | %.1f |\n", row.name.c_str(), ShortDTypeName(row.compute),
                row.timing.best * 1e3, row.timing.median * 1e3, row.gflops);
    std::fflush(stdout);
  }

  bool End() override { return std::fflush(stdout) == 0 && !std::ferror(stdout); }

 private:
  bool forward_begun_ = false;
  bool window_begun_ = false;
};

// ordered_json keeps the keys in the documented order, for people reading it.
using Json = nlohmann::ordered_json;

class JsonReport : public Report {
 public:
  JsonReport() {
    root_["machine"] = Json::object();
    root_["probes"] = Json::object();
    root_["workloads"] = Json::array();
    root_["layer_decode"] = Json::array();
    root_["window_decode"] = Json::array();
    root_["layer_forward"] = Json::array();
  }

  void Begin(const MachineInfo& machine, const ProbeRates& probes) override {
    root_["machine"] = {{"cpu", machine.cpu},         {"isa", machine.isa},
                        {"kernels", machine.kernels}, {"threads", machine.threads},
                        {"onednn", machine.onednn},   {"date", machine.date}};
    Json& p = root_["probes"];
    p["gemm_f32_gflops"] = probes.gemm_f32_gflops;
    p["gemm_bf16_gflops"] = probes.gemm_bf16_gflops ? Json(*probes.gemm_bf16_gflops) : Json();
    p["gemm_bf16_note"] = probes.gemm_bf16_note;
    p["bandwidth_gbs"] = probes.bandwidth_gbs;
    std::fprintf(stderr, "attention_bench: probes: gemm f32 %.1f GFLOP/s, bandwidth %.1f GB/s\n",
                 probes.gemm_f32_gflops, probes.bandwidth_gbs);
  }

  void AddWorkload(const WorkloadRow& row) override {
    const Workload& w = row.workload;
    root_["workloads"].push_back({{"name", w.name},
                                  {"dtype", ShortDTypeName(row.compute)},
                                  {"b", w.b},
                                  {"hq", w.hq},
                                  {"hkv", w.hkv},
                                  {"lq", w.lq},
                                  {"lk", w.lk},
                                  {"dk", w.dk},
                                  {"dv", w.dv},
                                  {"causal", w.causal},
                                  {"value_in_key", w.value_in_key},
                                  {"ms", row.timing.best * 1e3},
                                  {"median_ms", row.timing.median * 1e3},
                                  {"gflops", row.gflops},
                                  {"kv_gbs", row.kv_gbs},
                                  {"roof", row.roof.bound},
                                  {"roof_fraction", row.roof.fraction},
                                  {"roof_ms", row.roof.seconds * 1e3},
                                  {"gemm_gflops", row.gemm_gflops},
                                  {"bandwidth_gbs", row.bandwidth_gbs}});
    std::fprintf(stderr, "attention_bench: %s %s: %.3f ms\n", w.name.c_str(),
                 ShortDTypeName(row.compute), row.timing.best * 1e3);
  }

  void BeginDecode(int64_t batch, int64_t lk) override {}

  void AddDecode(const DecodeRow& row) override {
    root_["layer_decode"].push_back({{"variant", row.variant},
                                     {"kv_dtype", ShortDTypeName(row.kv_dtype)},
                                     {"compute_dtype", ShortDTypeName(row.compute)},
                                     {"kv_bytes_per_token", row.kv_bytes_per_token},
                                     {"layer_ms", row.layer_seconds * 1e3},
                                     {"layer_tokens_per_s", row.layer_tokens_per_s},
                                     {"layer_vs_f32", row.layer_vs_f32},
                                     {"attention_ms", row.attention_seconds * 1e3},
                                     {"attention_kv_gbs", row.attention_kv_gbs},
                                     {"attention_roof", row.attention_roof.bound},
                                     {"attention_roof_fraction", row.attention_roof.fraction},
                                     {"attention_vs_f32", row.attention_vs_f32},
                                     {"gemm_gflops", row.gemm_gflops},
                                     {"bandwidth_gbs", row.bandwidth_gbs}});
    std::fprintf(stderr, "attention_bench: decode %s kv %s compute %s: layer %.2f ms\n",
                 row.variant.c_str(), ShortDTypeName(row.kv_dtype), ShortDTypeName(row.compute),
                 row.layer_seconds * 1e3);
  }

  void AddWindowDecode(const WindowDecodeRow& row) override {
    root_["window_decode"].push_back({{"variant", row.variant},
                                      {"batch", row.batch},
                                      {"window", row.window},
                                      {"position", row.position},
                                      {"kv_held_mib", row.kv_held_mib},
                                      {"kv_appended_mib", row.kv_appended_mib},
                                      {"layer_ms", row.layer.best * 1e3},
                                      {"layer_median_ms", row.layer.median * 1e3},
                                      {"layer_tokens_per_s", row.layer_tokens_per_s},
                                      {"layer_vs_first", row.layer_vs_first},
                                      {"attention_ms", row.attention.best * 1e3},
                                      {"attention_median_ms", row.attention.median * 1e3},
                                      {"attention_vs_first", row.attention_vs_first}});
    std::fprintf(stderr, "attention_bench: window decode %s at %lld: layer %.2f ms\n",
                 row.variant.c_str(), static_cast<long long>(row.position), row.layer.best * 1e3);
  }

  void AddForward(const ForwardRow& row) override {
    root_["layer_forward"].push_back({{"name", row.name},
                                      {"compute_dtype", ShortDTypeName(row.compute)},
                                      {"ms", row.timing.best * 1e3},
                                      {"median_ms", row.timing.median * 1e3},
                                      {"gflops", row.gflops}});
    std::fprintf(stderr, "attention_bench: %s: %.3f ms\n", row.name.c_str(), row.timing.best * 1e3);
  }

  bool End() override {
    // A CPU model name is not guaranteed UTF-8; replace rather than throw.
    const std::string text = root_.dump(1, ' ', false, Json::error_handler_t::replace);
    std::printf("%s\n", text.c_str());
    return std::fflush(stdout) == 0 && !std::ferror(stdout);
  }

 private:
  Json root_;
};

}  // namespace

std::unique_ptr<Report> MakeMarkdownReport() { return std::make_unique<MarkdownReport>(); }
std::unique_ptr<Report> MakeJsonReport() { return std::make_unique<JsonReport>(); }

}  // namespace attention::bench
