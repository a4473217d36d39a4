// attention_loadtest's engine against a real server on loopback: counts add
// up, percentiles are ordered, and open-loop mode exposes queueing in a slow
// server that closed-loop mode hides.
#include "client/loadtest/runner.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "client/loadtest/report.h"
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
