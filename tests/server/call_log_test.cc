// The call log's lines are JSON objects with the documented fields, whatever
// bytes a message echoes.
#include "server/call_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/grpc_status.h"

namespace attention {
namespace {

nlohmann::json Parse(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  return nlohmann::json::parse(line);
}

TEST(CallLog, AUnaryCallLineHasItsFields) {
  server::CallRecord r;
  r.method = "Attend";
  r.request_bytes = 1056;
  r.response_bytes = 560;
  r.queue_us = 3;
  r.latency_us = 412;
  const nlohmann::json j = Parse(server::FormatCallLine(r, absl::FromUnixSeconds(0)));
  EXPECT_EQ(j["ts"], "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(j["method"], "Attend");
  EXPECT_EQ(j["code"], "OK");
  EXPECT_EQ(j["request_bytes"], 1056);
  EXPECT_EQ(j["response_bytes"], 560);
  EXPECT_EQ(j["queue_us"], 3);
  EXPECT_EQ(j["latency_us"], 412);
  EXPECT_FALSE(j.contains("tokens"));
  EXPECT_FALSE(j.contains("error"));
}

TEST(CallLog, DecodeLinesCountTokensInTheirOwnField) {
  server::CallRecord r;
  r.method = "Decode";
  r.request_bytes = 8192;
  r.response_bytes = 4096;
  r.tokens = 17;
  const nlohmann::json j = Parse(server::FormatCallLine(r, absl::Now()));
  EXPECT_EQ(j["tokens"], 17);
  EXPECT_EQ(j["response_bytes"], 4096);  // bytes, not tokens
}

TEST(CallLog, ErrorsAreEscapedAndCapped) {
  server::CallRecord r;
  r.method = "LoadModule";
  // Quotes, control bytes, invalid UTF-8 and far more than the cap.
  r.status = absl::InvalidArgumentError("name: \"x\"\n\t\xff\xfe" + std::string(20000, 'n'));
  const nlohmann::json j = Parse(server::FormatCallLine(r, absl::Now()));
  EXPECT_EQ(j["code"], "INVALID_ARGUMENT");
  const std::string error = j["error"];
  EXPECT_EQ(error.rfind("name: \"x\"\n\t", 0), 0u);
  EXPECT_LE(error.size(), server::kMaxStatusMessageBytes + 8);  // U+FFFD is 3 bytes for 1
}

}  // namespace
}  // namespace attention
