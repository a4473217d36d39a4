#include "server/call_log.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "server/grpc_status.h"

namespace attention::server {

std::string FormatCallLine(const CallRecord& r, absl::Time now) {
  nlohmann::ordered_json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
  line["method"] = r.method;
  line["code"] = absl::StatusCodeToString(r.status.code());
  line["request_bytes"] = r.request_bytes;
  line["response_bytes"] = r.response_bytes;
  if (r.tokens >= 0) line["tokens"] = r.tokens;
  line["queue_us"] = r.queue_us;
  line["latency_us"] = r.latency_us;
  if (!r.status.ok()) line["error"] = CapStatusMessage(r.status.message());
  // Invalid UTF-8 (a client's bytes echoed in a message) becomes U+FFFD
  // instead of an exception.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void CallLog::Write(const CallRecord& record) const {
  if (!enabled_) return;
  const std::string line = FormatCallLine(record, absl::Now());
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace attention::server
