// attention_loadtest: load-test an attention server and report.
//
//   attention_loadtest --target host:port[,host:port...] [--rpc attend|forward|decode|health]
//       [--concurrency N | --rps R] [--connections M] [--duration S] [--requests N]
//       [--warmup S] [--deadline_ms D] [--token T] [--metadata k=v,...]
//       [--mix FILE] [--sweep concurrency=1,2,4,8 | --sweep rps=50,100 | --sweep streams=1,4,16]
//       [--json FILE] [--html FILE] [--max_error_rate F] [shape flags: --b --hq --hkv --lq --lk --dk --dv
//        --causal --module --decode_steps --shared_prefix --dtype]
//
// Closed loop (default): N virtual users, each with one request outstanding.
// Open loop (--rps): a fixed timetable; latency counts from the scheduled
// send time, so queueing in a slow server shows (no coordinated omission).
// Decode (--rpc decode): --concurrency streams at once, each a prompt of --lq
// tokens then --decode_steps one-token steps; reports time to first token,
// inter-token latency and tokens/s per stream and in total.
// Exit status: 0, or 1 when the load could not run, or 2 when a run's
// failed requests pass --max_error_rate (default 0: any failure).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/attention_client.h"
#include "client/loadtest/report.h"
#include "client/loadtest/runner.h"
#include "client/loadtest/sweep.h"
#include "client/loadtest/workload.h"
#include "core/process.h"
#include "core/status_macros.h"
#include "flags/help.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "server(s): host:port[,host:port...] or dns:///name:port");
ABSL_FLAG(int, concurrency, 1, "closed loop: requests outstanding at once");
ABSL_FLAG(int, connections, 1, "gRPC channels (TCP connections), spread over the targets");
ABSL_FLAG(double, rps, 0, "open loop: requests per second on a fixed timetable (0: closed loop)");
ABSL_FLAG(double, duration, 10, "seconds to run (0: until --requests)");
ABSL_FLAG(int64_t, requests, 0, "requests to send (0: until --duration)");
ABSL_FLAG(double, warmup, 0, "seconds of unrecorded load first");
ABSL_FLAG(double, deadline_ms, 0, "per-request deadline (0: none)");
ABSL_FLAG(std::string, token, "", "bearer token: sent as 'authorization: Bearer TOKEN'");
ABSL_FLAG(std::string, metadata, "", "extra metadata, k=v[,k=v...]");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA file to trust: connect with TLS");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate file (mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM client key file (mutual TLS)");
ABSL_FLAG(std::string, tls_server_name, "", "name to check the server certificate against");
ABSL_FLAG(std::string, rpc, "attend", "attend, forward, decode or health");
ABSL_FLAG(std::string, mix, "", "mix file: lines 'WEIGHT RPC key=value ...'");
ABSL_FLAG(std::string, sweep, "",
          "concurrency=1,2,4,..., rps=10,20,... or (decode) streams=1,4,16,...: one run per value");
ABSL_FLAG(std::string, json, "", "write the JSON report here");
ABSL_FLAG(std::string, html, "", "write the HTML report here");
ABSL_FLAG(double, max_error_rate, 0,
          "fraction of failed requests (0..1) a run may have and still exit 0");
ABSL_FLAG(bool, progress, true, "live progress line (only on a terminal)");
ABSL_FLAG(int64_t, b, 1, "batch rows");
ABSL_FLAG(int64_t, hq, 8, "attend: query heads");
ABSL_FLAG(int64_t, hkv, 2, "attend: key/value heads");
ABSL_FLAG(int64_t, lq, 128, "queries (forward/decode: tokens; decode: the prefill)");
ABSL_FLAG(int64_t, lk, 0, "attend: keys (0: lq)");
ABSL_FLAG(int64_t, dk, 64, "attend: Dk");
ABSL_FLAG(int64_t, dv, 64, "attend: Dv");
ABSL_FLAG(bool, causal, true, "causal mask");
ABSL_FLAG(std::string, module, "demo-gqa", "forward/decode: module");
ABSL_FLAG(int64_t, decode_steps, 16, "decode: one-token steps per stream");
ABSL_FLAG(int64_t, shared_prefix, 0,
          "decode: the first P tokens (0..lq) of every stream's prompt are the same in every "
          "stream; the rest differ per stream");
ABSL_FLAG(std::string, dtype, "f32", "wire dtype of inputs: f32, f16, bf16");
ABSL_FLAG(int64_t, heap_retain_mb, 1024,
          "freed heap kept for reuse, MiB, so large responses do not page-fault in on every "
          "call (see attention_server --heap_retain_mb); 0: glibc's defaults");

namespace attention::loadtest {
namespace {

// Writes `text` to `path` and says where on stdout.
absl::Status WriteReport(const std::string& flag, const std::string& path,
                         const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  if (!out) {
    return absl::NotFoundError(absl::StrCat("--", flag, ": cannot write ", path));
  }
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  std::printf("%s report written to %s\n", flag.c_str(), ec ? path.c_str() : absolute.c_str());
  return absl::OkStatus();
}

// Runs the load and writes the reports; the results, for the verdict.
absl::StatusOr<std::vector<RunResult>> Main() {
  const double max_error_rate = absl::GetFlag(FLAGS_max_error_rate);
  if (!(max_error_rate >= 0 && max_error_rate <= 1)) {
    return absl::InvalidArgumentError("--max_error_rate: expected a fraction in [0, 1]");
  }
  RunConfig config;
  config.targets = absl::StrSplit(absl::GetFlag(FLAGS_target), ',', absl::SkipEmpty());
  config.concurrency = absl::GetFlag(FLAGS_concurrency);
  config.connections = absl::GetFlag(FLAGS_connections);
  config.rps = absl::GetFlag(FLAGS_rps);
  config.duration_s = absl::GetFlag(FLAGS_duration);
  config.requests = absl::GetFlag(FLAGS_requests);
  config.warmup_s = absl::GetFlag(FLAGS_warmup);
  config.deadline_ms = absl::GetFlag(FLAGS_deadline_ms);
  config.progress = absl::GetFlag(FLAGS_progress);
  if (!absl::GetFlag(FLAGS_token).empty()) {
    config.metadata.emplace_back("authorization", "Bearer " + absl::GetFlag(FLAGS_token));
  }
  for (auto [flag, out] : {std::pair{absl::GetFlag(FLAGS_tls_ca), &config.tls.tls_ca_pem},
                           std::pair{absl::GetFlag(FLAGS_tls_cert), &config.tls.tls_cert_pem},
                           std::pair{absl::GetFlag(FLAGS_tls_key), &config.tls.tls_key_pem}}) {
    if (!flag.empty()) {
      ATTN_ASSIGN_OR_RETURN(*out, client::ReadFileToString(flag));
    }
  }
  config.tls.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  for (absl::string_view kv : absl::StrSplit(absl::GetFlag(FLAGS_metadata), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    config.metadata.push_back(p);
  }

  WorkloadSpec defaults;
  defaults.b = absl::GetFlag(FLAGS_b);
  defaults.hq = absl::GetFlag(FLAGS_hq);
  defaults.hkv = absl::GetFlag(FLAGS_hkv);
  defaults.lq = absl::GetFlag(FLAGS_lq);
  defaults.lk = absl::GetFlag(FLAGS_lk);
  defaults.dk = absl::GetFlag(FLAGS_dk);
  defaults.dv = absl::GetFlag(FLAGS_dv);
  defaults.causal = absl::GetFlag(FLAGS_causal);
  defaults.module = absl::GetFlag(FLAGS_module);
  defaults.decode_steps = absl::GetFlag(FLAGS_decode_steps);
  defaults.shared_prefix = absl::GetFlag(FLAGS_shared_prefix);
  defaults.dtype = absl::GetFlag(FLAGS_dtype);
  std::vector<WorkloadSpec> specs;
  if (!absl::GetFlag(FLAGS_mix).empty()) {
    ATTN_ASSIGN_OR_RETURN(specs, ReadMixFile(absl::GetFlag(FLAGS_mix), defaults));
  } else {
    WorkloadSpec spec = defaults;
    ATTN_RETURN_IF_ERROR(ParseSpec(absl::GetFlag(FLAGS_rpc), spec));
    specs.push_back(spec);
  }
  client::ClientOptions client_options = config.tls;
  client_options.token = absl::GetFlag(FLAGS_token);
  ATTN_ASSIGN_OR_RETURN(auto client,
                        client::AttentionClient::Connect(config.targets[0], client_options));
  std::vector<Workload> workloads;
  for (const WorkloadSpec& s : specs) {
    ATTN_ASSIGN_OR_RETURN(Workload w, BuildWorkload(s, *client));
    workloads.push_back(std::move(w));
  }

  const bool decode = workloads.size() == 1 && workloads[0].rpc == RpcKind::kDecode;
  ATTN_ASSIGN_OR_RETURN(const std::vector<SweepRun> runs,
                        ParseSweep(absl::GetFlag(FLAGS_sweep), config, decode));
  std::vector<RunResult> results;
  for (const SweepRun& run : runs) {
    ATTN_ASSIGN_OR_RETURN(RunResult r, RunLoad(run.config, workloads));
    r.label = run.label;
    std::printf("%s\n", SummaryText(r).c_str());
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  if (results.size() > 1) {
    const std::string text = SweepText(results);
    std::printf("%s", text.substr(text.find("| run |")).c_str());
  }
  if (!absl::GetFlag(FLAGS_json).empty()) {
    ATTN_RETURN_IF_ERROR(WriteReport("json", absl::GetFlag(FLAGS_json), ReportJson(results)));
  }
  if (!absl::GetFlag(FLAGS_html).empty()) {
    ATTN_RETURN_IF_ERROR(WriteReport("html", absl::GetFlag(FLAGS_html), ReportHtml(results)));
  }
  return results;
}

}  // namespace
}  // namespace attention::loadtest

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "attention_loadtest --target host:port [--rpc attend|forward|decode|health] "
      "[--concurrency N | --rps R] [--duration S | --requests N] [--json F] [--html F]; "
      "--help lists every flag.");
  if (attention::flags::ParseCommandLineOrHelp(argc, argv, __FILE__)) return 0;
  // Its own page faults on every multi-MiB response would be counted in the
  // latencies it reports.
  attention::RetainFreedHeap(absl::GetFlag(FLAGS_heap_retain_mb));
  // Exit 1: the load could not run; 2: it ran, and too many requests failed.
  const auto results = attention::loadtest::Main();
  if (!results.ok()) {
    std::fprintf(stderr, "attention_loadtest: %s: %s\n",
                 absl::StatusCodeToString(results.status().code()).c_str(),
                 std::string(results.status().message()).c_str());
    return 1;
  }
  const absl::Status verdict =
      attention::loadtest::CheckErrorRate(*results, absl::GetFlag(FLAGS_max_error_rate));
  if (!verdict.ok()) {
    std::fprintf(stderr, "attention_loadtest: %s\n", std::string(verdict.message()).c_str());
    return 2;
  }
  return 0;
}
