#include "client/cli_output.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace attention::client {
namespace {

std::string MiB(int64_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }

// A limit of 0 is none.
std::string Limit(int64_t value, const std::string& text) {
  return value == 0 ? "no limit" : text;
}

}  // namespace

void PrintTensor(const char* label, const Tensor& t, pb::DType dtype) {
  double sum = 0, max_abs = 0;
  for (float x : t.values()) {
    sum += x;
    max_abs = std::max(max_abs, std::abs(static_cast<double>(x)));
  }
  std::printf("%s: shape %s %s, mean %.6g, max|x| %.6g, first:", label,
              ShapeString(t.shape()).c_str(), pb::DType_Name(dtype).c_str(),
              t.size() ? sum / t.size() : 0.0, max_abs);
  for (int64_t i = 0; i < std::min<int64_t>(6, t.size()); ++i) std::printf(" %.6g", t.data()[i]);
  std::printf("\n");
}

void PrintTiming(const Timing& t) {
  std::printf("timing: queue %lld us, compute %lld us, %.4g GFLOP (%.2f GFLOP/s)\n",
              static_cast<long long>(t.queue_us), static_cast<long long>(t.compute_us),
              t.flops / 1e9, t.compute_us > 0 ? t.flops / t.compute_us / 1e3 : 0.0);
}

void PrintModule(const pb::ModuleInfo& m) {
  std::printf("%-20s %-15s d_model %-6lld parameters %-12lld kv_bytes/token %lld\n",
              m.name().c_str(),
              pb::ModuleConfig::descriptor()
                  ->FindFieldByNumber(m.config().variant_case())
                  ->name()
                  .c_str(),
              static_cast<long long>(m.config().d_model()),
              static_cast<long long>(m.parameter_count()),
              static_cast<long long>(m.kv_cache_bytes_per_token()));
}

void PrintServerInfo(const pb::ServerInfo& info, const std::vector<pb::ModuleInfo>& modules) {
  const pb::Limits& l = info.limits();
  const pb::ServerLoad& load = info.load();
  const pb::KvCacheUsage& kv = info.kv_cache();
  std::vector<std::string> names;
  for (const auto& m : modules) names.push_back(m.name());
  std::printf("server: attention %s, oneDNN %s, isa %s, %d threads\n", info.version().c_str(),
              info.onednn_version().c_str(), info.cpu_isa().c_str(), info.threads());
  std::printf("variants: %s\n", absl::StrJoin(info.variants(), " ").c_str());
  std::printf("modules: %zu loaded: %s\n", modules.size(), absl::StrJoin(names, " ").c_str());
  std::printf("limits:\n");
  std::printf("  max_message: %s\n", MiB(l.max_message_bytes()).c_str());
  std::printf("  max_tensor_elements: %s\n",
              Limit(l.max_tensor_elements(), absl::StrCat(l.max_tensor_elements())).c_str());
  std::printf("  request_memory: %s\n",
              Limit(l.request_memory_bytes(), MiB(l.request_memory_bytes())).c_str());
  std::printf("  module_memory: %s\n",
              Limit(l.module_memory_bytes(), MiB(l.module_memory_bytes())).c_str());
  std::printf("  max_inflight_requests: %d (x %d compute threads)\n", l.max_inflight_requests(),
              l.compute_threads());
  std::printf("  max_queued_requests: %s\n",
              Limit(l.max_queued_requests(), absl::StrCat(l.max_queued_requests())).c_str());
  std::printf("  max_concurrent_streams: %s\n",
              Limit(l.max_concurrent_streams(), absl::StrCat(l.max_concurrent_streams())).c_str());
  std::printf("load:\n");
  std::printf("  inflight_requests: %d\n", load.inflight_requests());
  std::printf("  queued_requests: %d\n", load.queued_requests());
  std::printf("  reserved_memory: %s\n", MiB(load.reserved_memory_bytes()).c_str());
  std::printf("  module_memory: %s\n", MiB(load.module_memory_bytes()).c_str());
  std::printf("kv_cache: %s in blocks of %lld KiB\n",
              Limit(l.kv_cache_bytes(), MiB(l.kv_cache_bytes())).c_str(),
              static_cast<long long>(kv.block_bytes() >> 10));
  std::printf("  blocks_used: %lld\n", static_cast<long long>(kv.blocks_used()));
  std::printf("  blocks_total: %lld\n", static_cast<long long>(kv.blocks_total()));
  std::printf("  streams: %d\n", kv.streams());
  if (info.methods_size() > 0) std::printf("calls:\n");
  for (const pb::MethodStats& m : info.methods()) {
    std::vector<std::string> codes;
    for (const auto& [code, n] : m.codes()) codes.push_back(absl::StrCat(code, " ", n));
    std::sort(codes.begin(), codes.end());
    std::printf("  %s: %s\n", m.method().c_str(), absl::StrJoin(codes, ", ").c_str());
  }
}

}  // namespace attention::client
