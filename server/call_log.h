// The call log: one JSON object per line on stderr for every finished call
// (when --log_calls is on), e.g.
//   {"ts":"2026-12-01T22:16:04.123Z","method":"Attend","code":"OK",
//    "request_bytes":1056,"response_bytes":560,"queue_us":3,"latency_us":412}
// Decode streams log one "DecodeChunk" line per chunk and one "Decode" line
// when the stream ends; both add "tokens" (the chunk's new tokens; all the
// tokens the stream cached), and a stream's bytes are those of all its
// messages. Failed calls add "error" (the message, capped as clients see
// it).
#ifndef ATTENTION_SERVER_CALL_LOG_H_
#define ATTENTION_SERVER_CALL_LOG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace attention::server {

struct CallRecord {
  const char* method = "";
  absl::Status status;
  int64_t request_bytes = 0;
  int64_t response_bytes = 0;
  int64_t queue_us = 0;
  int64_t latency_us = 0;
  int64_t tokens = -1;  // Decode lines only (>= 0)
};

// The record's log line, newline-terminated, at time `now`.
std::string FormatCallLine(const CallRecord& record, absl::Time now);

// Writes records' lines to stderr when enabled. Thread-safe (one write per
// line).
class CallLog {
 public:
  explicit CallLog(bool enabled) : enabled_(enabled) {}
  void Write(const CallRecord& record) const;

 private:
  bool enabled_;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_CALL_LOG_H_
