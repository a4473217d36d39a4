#include "server/auth.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace attention::server {
namespace {

// Equal strings, in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() != b.size();
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseTokenFile(absl::string_view contents) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (std::any_of(line.begin(), line.end(), [](char c) { return absl::ascii_isspace(c); })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "auth token file: line ", line_number,
          " holds whitespace inside a token (one token per line; comments start with '#')"));
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        "auth token file: expected at least one token (one per line), got none");
  }
  return tokens;
}

absl::Status TokenAuth::Check(const grpc::ServerContextBase& ctx) const {
  if (tokens_.empty()) return absl::OkStatus();
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  bool valid = false;
  if (it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    constexpr absl::string_view kBearer = "Bearer ";
    if (value.size() > kBearer.size() && value.substr(0, kBearer.size()) == kBearer) {
      const absl::string_view token = value.substr(kBearer.size());
      for (const std::string& t : tokens_) valid |= ConstantTimeEquals(token, t);
    }
  }
  if (valid) return absl::OkStatus();
  return absl::UnauthenticatedError(
      it == metadata.end()
          ? "authorization: expected 'authorization: Bearer <token>' metadata, got none"
          : "authorization: the bearer token is not valid");
}

}  // namespace attention::server
