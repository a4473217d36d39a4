// A running attention server: the service, health checking, reflection and a
// listening port. Used by attention_server's main and by the tests, which
// listen on 127.0.0.1:0 and read the chosen port back.
#ifndef ATTENTION_SERVER_SERVER_H_
#define ATTENTION_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/service.h"

namespace grpc {
class Server;
}

namespace attention::server {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";
  bool demo_modules = true;
  int grpc_threads = 0;  // 0: gRPC's default
  ServiceOptions service;
  // TLS: PEM contents; both empty = plaintext. With tls_client_ca_pem,
  // clients must present a certificate signed by it (mTLS).
  std::string tls_cert_pem, tls_key_pem, tls_client_ca_pem;
  // Prometheus text endpoint (GET /metrics): -1 off, 0 any free port.
  int metrics_port = -1;
  std::string metrics_address = "127.0.0.1";
};

class AttentionServer {
 public:
  // Starts listening; health reports SERVING once this returns.
  // UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<AttentionServer>> Start(const ServerOptions& options);
  ~AttentionServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_ != nullptr ? metrics_->port() : -1; }
  AttentionServiceImpl& service() { return *service_; }

  // Graceful stop: health turns NOT_SERVING and new calls and streams are
  // refused (UNAVAILABLE); calls and streams in flight finish (for at most
  // `grace`, then they are cancelled); their responses get a moment to
  // reach the clients before the transports close (idle connections do not
  // hold the drain); then returns.
  void Drain(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  AttentionServer() = default;

  std::unique_ptr<AttentionServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_;
  int port_ = 0;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_SERVER_H_
