#include "server/grpc_status.h"

#include "absl/strings/str_cat.h"

namespace attention::server {

std::string CapStatusMessage(absl::string_view message) {
  if (message.size() <= kMaxStatusMessageBytes) return std::string(message);
  constexpr absl::string_view kCut = "... (";
  // Room for the suffix, whose number has at most 20 digits.
  size_t keep = kMaxStatusMessageBytes - kCut.size() - 32;
  // Back up over UTF-8 continuation bytes (10xxxxxx) to a character start.
  while (keep > 0 && (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80) --keep;
  return absl::StrCat(message.substr(0, keep), kCut, message.size() - keep, " bytes cut)");
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      CapStatusMessage(status.message()));
}

}  // namespace attention::server
