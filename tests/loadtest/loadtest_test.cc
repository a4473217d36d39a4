// attention_loadtest's engine against a real server on loopback: counts add
// up, percentiles are ordered, open-loop mode exposes queueing in a slow
// server that closed-loop mode hides, and decode streams report time to
// first token, inter-token latency and tokens/s; plus the decode prompts'
// shared prefix and the sweep's runs.
#include "client/loadtest/runner.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/loadtest/report.h"
#include "client/loadtest/sweep.h"
#include "tests/core/test_util.h"
#include "tests/server/test_server.h"

namespace attention::loadtest {
namespace {

RunConfig Config(const std::string& target) {
  RunConfig c;
  c.targets = {target};
  c.progress = false;
  return c;
}

Workload Tiny(client::AttentionClient& client) {
  WorkloadSpec spec;
  spec.rpc = RpcKind::kAttend;
  spec.hq = 4;
  spec.hkv = 2;
  spec.lq = 8;
  spec.dk = spec.dv = 16;
  return BuildWorkload(spec, client).value();
}

Workload Forward(client::AttentionClient& client, const std::string& module, int64_t lq) {
  WorkloadSpec spec;
  spec.rpc = RpcKind::kForward;
  spec.module = module;
  spec.lq = lq;
  return BuildWorkload(spec, client).value();
}

Workload Decode(client::AttentionClient& client, int64_t lq, int64_t steps) {
  WorkloadSpec spec;
  spec.rpc = RpcKind::kDecode;
  spec.module = "demo-gqa";
  spec.lq = lq;
  spec.decode_steps = steps;
  return BuildWorkload(spec, client).value();
}

// The markers of the chart `id` in `html`.
int Markers(const std::string& html, const std::string& id) {
  const size_t at = html.find(absl::StrCat("data-chart=\"", id, "\""));
  if (at == std::string::npos) return -1;
  const std::string svg = html.substr(at, html.find("</svg>", at) - at);
  int n = 0;
  for (size_t i = svg.find("class=\"marker\""); i != std::string::npos;
       i = svg.find("class=\"marker\"", i + 1)) {
    ++n;
  }
  return n;
}

TEST(DecodePrompt, StreamsShareExactlyTheirFirstSharedPrefixTokens) {
  const int64_t b = 2, lq = 6, d = 8, prefix = 4;
  const Tensor a = DecodePrompt(b, lq, d, prefix, 0);
  ASSERT_EQ(a.values().size(), static_cast<size_t>(b * lq * d));
  EXPECT_EQ(DecodePrompt(b, lq, d, prefix, 0).values(), a.values());  // seeded
  for (uint64_t stream : {1, 7, 1000}) {
    const Tensor other = DecodePrompt(b, lq, d, prefix, stream);
    for (int64_t row = 0; row < b; ++row) {
      for (int64_t t = 0; t < lq; ++t) {
        const auto first = a.values().begin() + (row * lq + t) * d;
        const std::vector<float> mine(first, first + d);
        const auto theirs_first = other.values().begin() + (row * lq + t) * d;
        const std::vector<float> theirs(theirs_first, theirs_first + d);
        if (t < prefix) {
          EXPECT_EQ(mine, theirs) << "stream " << stream << " row " << row << " token " << t;
        } else {
          EXPECT_NE(mine, theirs) << "stream " << stream << " row " << row << " token " << t;
        }
      }
    }
    // The same bytes on the wire, in every dtype.
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBfloat16}) {
      ::attention::v1::Tensor wa, wo;
      client::TensorToProto(a, dtype, &wa);
      client::TensorToProto(other, dtype, &wo);
      const size_t token_bytes = static_cast<size_t>(d * DTypeSize(dtype));
      for (int64_t row = 0; row < b; ++row) {
        const size_t at = static_cast<size_t>(row * lq) * token_bytes;
        EXPECT_EQ(wa.data().substr(at, prefix * token_bytes),
                  wo.data().substr(at, prefix * token_bytes));
        EXPECT_NE(wa.data().substr(at + prefix * token_bytes, token_bytes),
                  wo.data().substr(at + prefix * token_bytes, token_bytes));
      }
    }
  }
  // No shared prefix: streams differ from their first token; all shared: equal.
  EXPECT_NE(DecodePrompt(1, lq, d, 0, 0).values()[0], DecodePrompt(1, lq, d, 0, 1).values()[0]);
  EXPECT_EQ(DecodePrompt(b, lq, d, lq, 0).values(), DecodePrompt(b, lq, d, lq, 5).values());
}

TEST(ParseSweep, StreamsGiveOneDecodeRunPerCount) {
  RunConfig base;
  base.concurrency = 3;
  auto runs = ParseSweep("streams=1,4,16,32", base, /*decode=*/true);
  ASSERT_OK(runs);
  ASSERT_EQ(runs->size(), 4u);
  const int expected[] = {1, 4, 16, 32};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*runs)[i].config.concurrency, expected[i]);
    EXPECT_EQ((*runs)[i].label, absl::StrCat("streams=", expected[i]));
  }
  auto one = ParseSweep("", base, true);
  ASSERT_OK(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].config.concurrency, 3);
  EXPECT_EQ((*one)[0].label, "");
  for (const char* bad : {"streams=1,x", "streams=0", "streams=1.5", "streams=", "width=1,2"}) {
    EXPECT_EQ(ParseSweep(bad, base, true).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(ParseSweep("streams=1,2", base, /*decode=*/false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, SharedPrefixMustLieWithinThePrompt) {
  WorkloadSpec spec;
  spec.rpc = RpcKind::kDecode;
  spec.lq = 16;
  spec.shared_prefix = 17;
  EXPECT_EQ(BuildWorkload(spec, *client_).status().code(), absl::StatusCode::kInvalidArgument);
  spec.shared_prefix = 16;
  EXPECT_OK(BuildWorkload(spec, *client_));
}

TEST_F(ServerTest, DecodeReportsTimeToFirstTokenInterTokenLatencyAndTokensPerSecond) {
  const int64_t steps = 5;
  RunConfig c = Config(address());
  c.concurrency = 2;
  c.requests = 3 * c.concurrency * steps;  // each stream takes its steps when it opens: 6 streams
  c.duration_s = 60;
  auto r = RunLoad(c, {Decode(*client_, 16, steps)});
  ASSERT_OK(r);
  ASSERT_EQ(r->succeeded, c.requests);
  ASSERT_TRUE(r->decode.has_value());
  const DecodeStats& d = *r->decode;
  const int64_t streams = c.requests / steps;
  EXPECT_EQ(d.streams, streams);
  EXPECT_EQ(d.ttft.count(), streams);
  EXPECT_GT(d.ttft.min(), 0);
  EXPECT_LE(d.ttft.Percentile(50), d.ttft.Percentile(99));
  EXPECT_EQ(d.itl.count(), streams * (steps - 1));
  EXPECT_GT(d.itl.min(), 0);
  EXPECT_LE(d.itl.Percentile(50), d.itl.Percentile(99));
  // A stream's `steps` tokens take at least its steps - 1 inter-token gaps.
  EXPECT_EQ(d.rate_streams, streams);
  EXPECT_GT(d.stream_tokens_per_s(), 0);
  const double fastest = steps * 1e9 / ((steps - 1) * static_cast<double>(d.itl.min()));
  EXPECT_LE(d.stream_tokens_per_s(), fastest * 1.01);
  // Totals: a token per step of each stream (B = 1), over the run.
  EXPECT_EQ(r->tokens, static_cast<double>(streams * steps));
  EXPECT_DOUBLE_EQ(r->tokens_per_s(), r->tokens / r->duration_s);
  EXPECT_LE(r->tokens_per_s(), c.concurrency * fastest * 1.01);
  // The contract has no reused_tokens yet: the figure is left out.
  const bool reused_field =
      ::attention::v1::DecodeResponse::descriptor()->FindFieldByName("reused_tokens") != nullptr;
  EXPECT_EQ(d.reused_tokens.has_value(), reused_field);

  const std::string text = SummaryText(*r);
  EXPECT_TRUE(absl::StrContains(text, absl::StrCat("decode      ", streams, " streams answered")))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "ttft ms     p50")) << text;
  EXPECT_TRUE(absl::StrContains(text, absl::StrCat("(", streams * (steps - 1), " gaps)"))) << text;
  const nlohmann::json json = nlohmann::json::parse(ReportJson({*r}))["runs"][0]["decode"];
  EXPECT_EQ(json["streams"], streams);
  EXPECT_EQ(json["ttft_ms"]["count"], streams);
  EXPECT_EQ(json["itl_ms"]["count"], streams * (steps - 1));
  EXPECT_EQ(json["itl_ms"]["p99"], d.itl.Percentile(99) / 1e6);
  EXPECT_EQ(json["tokens_per_s"]["total"], r->tokens_per_s());
  EXPECT_EQ(json["tokens_per_s"]["per_stream_mean"], d.stream_tokens_per_s());
  EXPECT_EQ(json.contains("reused_tokens"), reused_field);
  EXPECT_TRUE(absl::StrContains(ReportHtml({*r}), "<table class=\"decode\">"));
}

TEST_F(ServerTest, DecodeSweepDrawsOnePointPerStreamCount) {
  const int64_t steps = 3;
  const Workload w = Decode(*client_, 8, steps);
  RunConfig base = Config(address());
  base.duration_s = 60;
  auto runs = ParseSweep("streams=1,2,3", base, /*decode=*/true);
  ASSERT_OK(runs);
  std::vector<RunResult> results;
  for (const SweepRun& run : *runs) {
    RunConfig c = run.config;
    c.requests = 2 * c.concurrency * steps;
    auto r = RunLoad(c, {w});
    ASSERT_OK(r);
    r->label = run.label;
    EXPECT_EQ(r->decode->streams, 2 * c.concurrency);
    results.push_back(std::move(*r));
  }
  const std::string html = ReportHtml(results);
  EXPECT_EQ(Markers(html, "sweep"), 2 * 3);                     // ITL p50, p99 by tokens/s
  EXPECT_EQ(Markers(html, "decode-tokens-by-streams"), 2 * 3);  // total, per stream
  EXPECT_EQ(Markers(html, "decode-itl-by-streams"), 3);
  const std::string text = SweepText(results);
  for (int streams : {1, 2, 3}) {
    EXPECT_TRUE(absl::StrContains(text, absl::StrCat("| streams=", streams, " | ", streams, " | ")))
        << text;
  }
}

TEST_F(ServerTest, BoundedRunCountsEveryRequestOnce) {
  RunConfig c = Config(address());
  c.concurrency = 4;
  c.connections = 2;
  c.requests = 300;
  c.duration_s = 30;
  // A mix: attend, forward and a module that does not exist (NOT_FOUND).
  Workload missing = Forward(*client_, "demo-sa", 8);
  missing.request = [&] {
    ::attention::v1::ForwardRequest r;
    r.ParseFromString(missing.request);
    r.set_module("no-such-module");
    return r.SerializeAsString();
  }();
  std::vector<Workload> mix = {Tiny(*client_), Forward(*client_, "demo-sa", 8), missing};
  auto r = RunLoad(c, mix);
  ASSERT_OK(r);
  EXPECT_EQ(r->sent, 300);
  EXPECT_EQ(r->succeeded + r->failed, r->sent);
  EXPECT_EQ(r->codes["OK"], r->succeeded);
  EXPECT_EQ(r->codes["NOT_FOUND"], 100);  // every third request
  EXPECT_EQ(r->failed, 100);
  int64_t by_code = 0;
  for (const auto& [code, n] : r->codes) by_code += n;
  EXPECT_EQ(by_code, r->sent);
  const Histogram& h = r->latency;
  EXPECT_EQ(h.count(), r->succeeded);
  EXPECT_LE(h.min(), h.Percentile(50));
  EXPECT_LE(h.Percentile(50), h.Percentile(90));
  EXPECT_LE(h.Percentile(90), h.Percentile(99));
  EXPECT_LE(h.Percentile(99), h.Percentile(99.9));
  EXPECT_LE(h.Percentile(99.9), h.max());
  EXPECT_GT(r->tokens, 0);
  EXPECT_GT(r->flops, 0);
  int64_t series_total = 0;
  for (const SecondStats& s : r->series) series_total += s.completed + s.errors;
  EXPECT_EQ(series_total, r->sent);

  const nlohmann::json json = nlohmann::json::parse(ReportJson({*r}));
  ASSERT_EQ(json["runs"].size(), 1u);
  EXPECT_EQ(json["runs"][0]["sent"], 300);
  EXPECT_EQ(json["runs"][0]["status_codes"]["NOT_FOUND"], 100);
  EXPECT_EQ(json["runs"][0]["latency_ms"]["p99_9"], r->latency.Percentile(99.9) / 1e6);
  const std::string html = ReportHtml({*r});
  EXPECT_TRUE(absl::StrContains(html, "<svg"));
  EXPECT_TRUE(absl::StrContains(SummaryText(*r), "300 sent = 200 succeeded + 100 failed"));
}

TEST_F(ServerTest, FailuresKeepTheServersReasonAndDecideTheVerdict) {
  RunConfig c = Config(address());
  c.concurrency = 2;
  c.requests = 30;
  c.duration_s = 30;
  // Every other request has Hq = 3 over Hkv = 2 heads: INVALID_ARGUMENT.
  Workload bad = Tiny(*client_);
  bad.request = [&] {
    ::attention::v1::AttendRequest r;
    r.ParseFromString(bad.request);
    r.mutable_query()->set_shape(1, 3);
    return r.SerializeAsString();
  }();
  auto r = RunLoad(c, {Tiny(*client_), bad});
  ASSERT_OK(r);
  ASSERT_EQ(r->failed, 15);
  ASSERT_EQ(r->first_errors.size(), 1u);
  const std::string& reason = r->first_errors.at("INVALID_ARGUMENT");
  EXPECT_FALSE(reason.empty());
  EXPECT_TRUE(absl::StrContains(SummaryText(*r),
                                "  error       INVALID_ARGUMENT (15\u00d7): " + reason))
      << SummaryText(*r);
  const nlohmann::json errors = nlohmann::json::parse(ReportJson({*r}))["runs"][0]["errors"];
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["code"], "INVALID_ARGUMENT");
  EXPECT_EQ(errors[0]["count"], 15);
  EXPECT_EQ(errors[0]["first_message"], reason);
  EXPECT_TRUE(absl::StrContains(ReportHtml({*r}), "<td>INVALID_ARGUMENT</td>"));

  // Half failed: within a budget of 0.5, beyond 0.49 or the default 0.
  EXPECT_OK(CheckErrorRate({*r}, 0.5));
  const absl::Status over = CheckErrorRate({*r}, 0.49);
  EXPECT_EQ(over.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(over.message(), "15 of 30 requests failed")) << over;
  EXPECT_TRUE(absl::StrContains(over.message(), "--max_error_rate")) << over;
  EXPECT_FALSE(CheckErrorRate({*r}, 0).ok());
}

TEST_F(ServerTest, ReportsTheServersComputeTimeOfEachCall) {
  RunConfig c = Config(address());
  c.requests = 40;
  c.duration_s = 30;
  WorkloadSpec health;
  health.rpc = RpcKind::kHealth;
  auto r = RunLoad(c, {Tiny(*client_), Forward(*client_, "demo-gqa", 64),
                       BuildWorkload(health, *client_).value()});
  ASSERT_OK(r);
  ASSERT_EQ(r->succeeded, 40);
  // Attend and Forward responses carry timing.compute_us; health checks do not.
  const int64_t timed = r->server_compute.count();
  EXPECT_GE(timed, 20);
  EXPECT_LT(timed, 40);
  EXPECT_GT(r->server_compute.max(), 0);
  EXPECT_LE(r->server_compute.Percentile(50), r->latency.max());
  EXPECT_TRUE(absl::StrContains(SummaryText(*r), "server ms   compute p50")) << SummaryText(*r);
  EXPECT_EQ(nlohmann::json::parse(ReportJson({*r}))["runs"][0]["server_compute_ms"]["count"],
            timed);
}

class SlowServerTest : public ServerTest {
  void Customize(server::ServerOptions& options) override {
    options.service.workers = 1;
    options.service.max_queued = 0;      // let the queue grow: that is what is measured
    options.service.test_delay_ms = 20;  // capacity: 50 requests/s
  }
};

TEST_F(SlowServerTest, OpenLoopShowsQueueingThatClosedLoopHides) {
  if (kSanitized) GTEST_SKIP() << "latency bounds do not hold under sanitizers";
  const std::vector<Workload> w = {Tiny(*client_)};
  RunConfig closed = Config(address());
  closed.concurrency = 1;
  closed.duration_s = 1.5;
  auto c = RunLoad(closed, w);
  ASSERT_OK(c);
  // One request at a time: each takes at least the fixed delay (how much
  // more depends on the machine's load, so only the open loop's excess over
  // it is asserted below).
  EXPECT_GE(c->latency.Percentile(50), 20'000'000);

  RunConfig open = Config(address());
  open.rps = 80;  // 1.6× what the server can do
  open.duration_s = 2;
  auto o = RunLoad(open, w);
  ASSERT_OK(o);
  EXPECT_EQ(o->sent, 160);
  EXPECT_EQ(o->succeeded, 160);
  // Latency from the scheduled time includes the queue that builds up.
  EXPECT_GT(o->latency.Percentile(99), 4 * c->latency.Percentile(99));
  EXPECT_GT(o->latency.Percentile(99), 300'000'000);
  ASSERT_GE(o->series.size(), 2u);
  EXPECT_GT(o->series.back().p50_ns, o->series.front().p50_ns);  // grows over time
}

}  // namespace
}  // namespace attention::loadtest
