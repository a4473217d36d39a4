// absl::Status -> grpc::Status: the one conversion every reply goes through.
//
// absl and gRPC status codes share their numbers, so the code is a cast. The
// message is capped: an error may echo a client's input (a name, a shape),
// and gRPC carries the message in the trailing metadata, whose size clients
// limit (8 KiB by default); past that limit a client sees only a
// transport error instead of the code and the message.
#ifndef ATTENTION_SERVER_GRPC_STATUS_H_
#define ATTENTION_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace attention::server {

// Most bytes of a status message sent to a client (gRPC percent-encodes
// bytes outside printable ASCII, at most tripling this).
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// `message` cut to at most kMaxStatusMessageBytes, at a UTF-8 character
// boundary, ending "... (N bytes cut)" when it was cut.
std::string CapStatusMessage(absl::string_view message);

// The same code, the message capped.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace attention::server

#endif  // ATTENTION_SERVER_GRPC_STATUS_H_
