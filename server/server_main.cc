// attention_server: serves attention.v1 on gRPC.
//
//   attention_server [--listen=127.0.0.1:50051] [--workers=2]
//                    [--compute_threads=0] [--max_message_mb=256]
//                    [--max_tensor_elements=67108864] [--demo_modules=true]
//                    [--log_calls=true] [--drain_seconds=30]
//                    [--kv_cache_mb=1024] [--kv_block_kb=64] [--max_streams=64]
//                    [--heap_retain_mb=1024] ...  (--help lists every flag)
//
// SIGTERM or SIGINT drains: health turns NOT_SERVING, new calls are refused,
// calls in flight finish, then the process exits 0. A second signal during
// the drain exits at once (status 1).
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/process.h"
#include "core/threading.h"
#include "flags/help.h"
#include "server/auth.h"
#include "server/demo_modules.h"
#include "server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "address:port to listen on");
ABSL_FLAG(int, workers, 2, "requests computing at once (the compute pool, apart from gRPC's threads)");
ABSL_FLAG(int, compute_threads, 0, "OpenMP threads each request computes with; 0 = all cores");
ABSL_FLAG(int64_t, max_message_mb, 256, "largest request or response message, MiB");
ABSL_FLAG(int64_t, max_tensor_elements, int64_t{64} << 20,
          "largest tensor (input, output, weight) in elements; larger is RESOURCE_EXHAUSTED");
ABSL_FLAG(bool, demo_modules, true, "load demo-sa, demo-mha, demo-gqa, demo-mqa, demo-mla at start");
ABSL_FLAG(bool, log_calls, true, "one JSON log line per call on stderr");
ABSL_FLAG(int, drain_seconds, 30, "on SIGTERM/SIGINT, how long calls in flight may take");
ABSL_FLAG(int64_t, kv_cache_mb, 1024, "KV-cache budget of all Decode streams together, MiB");
ABSL_FLAG(int64_t, kv_block_kb, 64, "size of one KV-cache block (the paging unit), KiB");
ABSL_FLAG(int, max_streams, 64, "Decode streams open at once (0: no limit)");
ABSL_FLAG(int, max_queued, 64, "requests waiting for a worker; more get RESOURCE_EXHAUSTED at once");
ABSL_FLAG(int64_t, module_memory_mb, attention::AvailableMemoryBytes() / 4 >> 20,
          "weights all loaded modules may hold together, MiB (default: a quarter of the "
          "machine's or the container's memory); past it LoadModule is RESOURCE_EXHAUSTED; "
          "0: no limit");
ABSL_FLAG(int64_t, request_memory_mb, 4096,
          "memory the requests in flight may reserve together (estimates); more is RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain file: serve TLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key file of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA file: require client certificates it signed (mTLS)");
ABSL_FLAG(std::string, auth_token_file, "",
          "file of bearer tokens, one per line ('#' starts a comment line): calls must send "
          "'authorization: Bearer <token>' (the health service stays open)");
ABSL_FLAG(std::string, model_dir, "",
          "directory of the .safetensors files LoadModule may name (its `file`); empty: none");
ABSL_FLAG(int, metrics_port, -1, "serve Prometheus metrics (GET /metrics) on this port; -1: off");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1", "address of the metrics endpoint");
ABSL_FLAG(int64_t, heap_retain_mb, 1024,
          "freed heap memory kept for reuse instead of returned to the OS, MiB (tensor buffers "
          "then reuse mapped pages instead of page-faulting on every call); 0: glibc's defaults");
ABSL_FLAG(int, test_delay_ms, 0, "testing only: add this fixed latency to every computing call");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "attention_server [flags]: serves attention.v1 (see proto/attention/v1/attention.proto).");
  if (attention::flags::ParseCommandLineOrHelp(argc, argv, __FILE__)) return 0;

  attention::RetainFreedHeap(absl::GetFlag(FLAGS_heap_retain_mb));

  // Signals are taken by a dedicated thread: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  attention::server::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.demo_modules = absl::GetFlag(FLAGS_demo_modules);
  options.service.workers = absl::GetFlag(FLAGS_workers);
  options.service.compute_threads = absl::GetFlag(FLAGS_compute_threads);
  options.service.max_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  options.service.max_tensor_elements = absl::GetFlag(FLAGS_max_tensor_elements);
  options.service.log_calls = absl::GetFlag(FLAGS_log_calls);
  options.service.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mb) << 20;
  options.service.kv_block_bytes = absl::GetFlag(FLAGS_kv_block_kb) << 10;
  options.service.max_streams = absl::GetFlag(FLAGS_max_streams);
  options.service.test_delay_ms = absl::GetFlag(FLAGS_test_delay_ms);
  options.service.max_queued = absl::GetFlag(FLAGS_max_queued);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.service.request_memory_bytes = absl::GetFlag(FLAGS_request_memory_mb) << 20;
  options.service.module_memory_bytes = absl::GetFlag(FLAGS_module_memory_mb) << 20;
  options.service.model_dir = absl::GetFlag(FLAGS_model_dir);
  auto read = [](const std::string& path, std::string* out) -> bool {
    if (path.empty()) return true;
    std::ifstream in(path);
    if (!in) {
      std::fprintf(stderr, "attention_server: cannot read %s\n", path.c_str());
      return false;
    }
    out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return true;
  };
  std::string tokens;
  if (!read(absl::GetFlag(FLAGS_tls_cert), &options.tls_cert_pem) ||
      !read(absl::GetFlag(FLAGS_tls_key), &options.tls_key_pem) ||
      !read(absl::GetFlag(FLAGS_tls_client_ca), &options.tls_client_ca_pem) ||
      !read(absl::GetFlag(FLAGS_auth_token_file), &tokens)) {
    return 1;
  }
  if (!absl::GetFlag(FLAGS_auth_token_file).empty()) {
    absl::StatusOr<std::vector<std::string>> parsed = attention::server::ParseTokenFile(tokens);
    if (!parsed.ok()) {
      std::fprintf(stderr, "attention_server: %s: %s\n",
                   absl::GetFlag(FLAGS_auth_token_file).c_str(),
                   std::string(parsed.status().message()).c_str());
      return 1;
    }
    options.service.auth_tokens = std::move(*parsed);
  }
  auto server = attention::server::AttentionServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "attention_server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const auto& so = (*server)->service().options();
  std::fprintf(stderr,
               "attention_server %s listening on %s (port %d); oneDNN %s, isa %s; workers %d x "
               "%d compute threads\n",
               attention::server::ServerVersion(), options.listen.c_str(), (*server)->port(),
               attention::OneDnnVersion(), attention::CpuIsa(), so.workers, so.compute_threads);
  const std::string modules =
      options.demo_modules
          ? absl::StrCat(absl::StrJoin(attention::server::DemoModuleNames(), " "),
                         " (demo; LoadModule adds more)")
          : "none yet (LoadModule adds them; --demo_modules loads five demos)";
  std::fprintf(stderr, "attention_server: modules: %s\n", modules.c_str());
  if ((*server)->metrics_port() >= 0) {
    std::fprintf(stderr, "attention_server: metrics on http://%s:%d/metrics\n",
                 options.metrics_address.c_str(), (*server)->metrics_port());
  } else {
    std::fprintf(stderr, "attention_server: metrics off (--metrics_port=N serves them)\n");
  }
  std::fprintf(stderr, "attention_server: %s, %s\n",
               options.tls_cert_pem.empty() ? "plaintext"
               : options.tls_client_ca_pem.empty() ? "TLS" : "mutual TLS",
               options.service.auth_tokens.empty() ? "no token auth" : "bearer-token auth");

  // The first signal drains; a second one during the drain exits at once.
  std::atomic<bool> drained{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr,
                 "attention_server: signal %d, draining (up to %d s; a second signal stops at "
                 "once)\n",
                 sig, absl::GetFlag(FLAGS_drain_seconds));
    std::thread drainer([&] {
      (*server)->Drain(absl::Seconds(absl::GetFlag(FLAGS_drain_seconds)));
      drained.store(true);
    });
    const timespec tick = {0, 50'000'000};
    while (!drained.load()) {
      const int second = sigtimedwait(&signals, nullptr, &tick);
      if (second > 0) {
        std::fprintf(stderr, "attention_server: signal %d during the drain, exiting now\n",
                     second);
        std::fflush(stderr);
        std::_Exit(1);
      }
    }
    drainer.join();
  });
  (*server)->Wait();
  waiter.join();
  std::fprintf(stderr, "attention_server: stopped\n");
  return 0;
}
