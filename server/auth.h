// Bearer-token authentication of calls ("authorization: Bearer <token>").
#ifndef ATTENTION_SERVER_AUTH_H_
#define ATTENTION_SERVER_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace attention::server {

// The tokens of an --auth_token_file: one per line, surrounding whitespace
// stripped; blank lines and lines whose first non-blank character is '#'
// (comments) are not tokens. INVALID_ARGUMENT when no token is left, or when
// a token holds whitespace (one token per line).
absl::StatusOr<std::vector<std::string>> ParseTokenFile(absl::string_view contents);

// Checks calls against a set of tokens. No tokens: every call passes.
// Immutable, so thread-safe.
class TokenAuth {
 public:
  explicit TokenAuth(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

  bool enabled() const { return !tokens_.empty(); }
  // OK when auth is off or `ctx` carries one of the tokens (compared in time
  // that depends only on the lengths); UNAUTHENTICATED otherwise.
  absl::Status Check(const grpc::ServerContextBase& ctx) const;

 private:
  std::vector<std::string> tokens_;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_AUTH_H_
