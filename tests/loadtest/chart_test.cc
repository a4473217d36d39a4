// The report's chart geometry: round-number ticks, the percentile axis,
// partial-second trimming, and the SVG's scaling and markers.
#include "client/loadtest/chart.h"

#include <gtest/gtest.h>

#include <cmath>

#include "absl/strings/match.h"

namespace attention::loadtest {
namespace {

std::vector<std::string> Labels(const std::vector<Tick>& ticks) {
  std::vector<std::string> out;
  for (const Tick& t : ticks) out.push_back(t.label);
  return out;
}

TEST(RoundTicks, StepsAreOneTwoOrFiveTimesAPowerOfTenAndCoverTheMax) {
  EXPECT_EQ(Labels(RoundTicks(7.3)), (std::vector<std::string>{"0", "2", "4", "6", "8"}));
  EXPECT_EQ(Labels(RoundTicks(100)),
            (std::vector<std::string>{"0", "20", "40", "60", "80", "100"}));
  EXPECT_EQ(Labels(RoundTicks(0.037)),
            (std::vector<std::string>{"0.00", "0.01", "0.02", "0.03", "0.04"}));
  EXPECT_EQ(Labels(RoundTicks(1234, 4)),
            (std::vector<std::string>{"0", "500", "1000", "1500"}));
  const std::vector<Tick> ticks = RoundTicks(0.037);
  EXPECT_DOUBLE_EQ(ticks.back().at, 0.04);
}

TEST(RoundTicks, AnEmptyRangeStillHasAnAxis) {
  EXPECT_EQ(Labels(RoundTicks(0)), (std::vector<std::string>{"0", "1"}));
}

TEST(PercentileAxis, EachNineOfTheTailTakesOneUnit) {
  EXPECT_DOUBLE_EQ(PercentileX(0), 0);
  EXPECT_NEAR(PercentileX(90), 1, 1e-12);
  EXPECT_NEAR(PercentileX(99), 2, 1e-12);
  EXPECT_NEAR(PercentileX(99.9), 3, 1e-9);
  const std::vector<Tick> ticks = PercentileTicks(3);
  EXPECT_EQ(Labels(ticks), (std::vector<std::string>{"0%", "50%", "90%", "99%", "99.9%"}));
  EXPECT_NEAR(ticks[1].at, std::log10(2.0), 1e-12);
  EXPECT_EQ(Labels(PercentileTicks(4.5)).back(), "99.99%");
}

TEST(PercentileAxis, EndsAtTheNinesTheSamplesResolve) {
  EXPECT_NEAR(PercentileAxisEnd(1000), 3, 1e-12);
  EXPECT_NEAR(PercentileAxisEnd(150), std::log10(150.0), 1e-12);
  EXPECT_EQ(PercentileAxisEnd(0), 1);
  EXPECT_EQ(PercentileAxisEnd(5), 1);
  EXPECT_EQ(PercentileAxisEnd(int64_t{1} << 40), 6);
}

TEST(FullSeconds, DropsTheLastSecondWhenTheRunEndedInsideIt) {
  std::vector<SecondStats> series(3);
  for (int i = 0; i < 3; ++i) {
    series[i].t = i;
    series[i].completed = 100;
  }
  series[2].completed = 30;  // the run ended 0.3 s into it
  const std::vector<SecondStats> trimmed = FullSeconds(series, 2.3);
  ASSERT_EQ(trimmed.size(), 2u);
  EXPECT_EQ(trimmed.back().t, 1);
  EXPECT_EQ(FullSeconds(series, 3.0).size(), 3u);
  EXPECT_TRUE(FullSeconds(series, 0.5).empty());
}

TEST(LineChartSvg, ScalesToThePageAndMarksEveryPoint) {
  ChartSpec spec{"sweep", "Latency against throughput", "requests/s", "latency ms"};
  spec.markers = true;
  Series p99{"p99", {{10, 1.5}, {20, 2.5}, {25, 9}}, {"c=1", "c=2", "c=4"}};
  const std::string svg = LineChartSvg(spec, {p99});
  EXPECT_TRUE(absl::StrContains(svg, "viewBox=\"0 0 ")) << svg;
  EXPECT_TRUE(absl::StrContains(svg, "width=\"100%\""));
  EXPECT_TRUE(absl::StrContains(svg, "data-chart=\"sweep\""));
  size_t markers = 0;
  for (size_t at = svg.find("class=\"marker\""); at != std::string::npos;
       at = svg.find("class=\"marker\"", at + 1)) {
    ++markers;
  }
  EXPECT_EQ(markers, 3u);
  EXPECT_TRUE(absl::StrContains(svg, ">c=4</text>"));
  EXPECT_TRUE(absl::StrContains(svg, ">10</text>"));  // round ticks: y 0, 2, ... 10
}

TEST(HtmlEscape, EscapesMarkupAndQuotes) {
  EXPECT_EQ(HtmlEscape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
}

}  // namespace
}  // namespace attention::loadtest
