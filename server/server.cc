#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"
#include "core/threading.h"
#include "server/demo_modules.h"

namespace attention::server {

absl::StatusOr<std::unique_ptr<AttentionServer>> AttentionServer::Start(
    const ServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::unique_ptr<AttentionServer> s(new AttentionServer);
  WarmUp();  // the first call should not pay for oneDNN's JIT
  ATTN_ASSIGN_OR_RETURN(s->service_, AttentionServiceImpl::Create(options.service));
  if (options.demo_modules) ATTN_RETURN_IF_ERROR(LoadDemoModules(s->service_->registry()));

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty() || !options.tls_key_pem.empty()) {
    if (options.tls_cert_pem.empty() || options.tls_key_pem.empty()) {
      return absl::InvalidArgumentError("tls: a certificate needs its key and a key its certificate");
    }
    grpc::SslServerCredentialsOptions ssl(
        options.tls_client_ca_pem.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = options.tls_client_ca_pem;
    ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  const int max_bytes = static_cast<int>(
      std::min<int64_t>(options.service.max_message_bytes, std::numeric_limits<int>::max()));
  builder.SetMaxReceiveMessageSize(max_bytes);
  builder.SetMaxSendMessageSize(max_bytes);
  if (options.grpc_threads > 0) {
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                                options.grpc_threads);
  }
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: cannot bind ", options.listen));
  }
  if (options.metrics_port >= 0) {
    AttentionServiceImpl* service = s->service_.get();
    ATTN_ASSIGN_OR_RETURN(s->metrics_,
                          MetricsHttpServer::Start(options.metrics_address, options.metrics_port,
                                                   [service] { return service->RenderMetrics(); }));
  }
  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus("attention.v1.AttentionService", true);
  return s;
}

AttentionServer::~AttentionServer() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
}

void AttentionServer::Drain(absl::Duration grace) {
  const absl::Time deadline = absl::Now() + grace;
  server_->GetHealthCheckService()->SetServingStatus(false);
  Admission& admission = service_->admission();
  admission.StartDraining();
  // Closing transports while a large response is still being written can
  // reset the connection under it: wait for the work to end first, then
  // let the last bytes go out.
  while ((admission.inflight() > 0 || admission.streams() > 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Milliseconds(200));
  // Past its deadline, Shutdown cancels what is left and closes every
  // transport; before it, it waits for idle clients to close theirs. Nothing
  // is left to wait for now (or the grace is spent), so the deadline is a
  // moment for the last refusals to go out, whatever clients are connected.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
}

void AttentionServer::Wait() { server_->Wait(); }

}  // namespace attention::server
