// The HTML report's charts: axis geometry (pure, unit-tested) and inline SVG
// line charts that scale to the page's width (viewBox, width 100%).
//
// A latency-by-percentile chart puts percentile p (0 <= p < 100) at
//   x = log10(1 / (1 - p/100))        0% -> 0, 90% -> 1, 99% -> 2, 99.9% -> 3
// as HdrHistogram plots do, so each added nine of the tail gets equal room.
#ifndef ATTENTION_CLIENT_LOADTEST_CHART_H_
#define ATTENTION_CLIENT_LOADTEST_CHART_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/loadtest/runner.h"

namespace attention::loadtest {

struct Tick {
  double at = 0;      // position in data units (for percentiles: x as above)
  std::string label;  // "0.5", "250", "99.9%"
};

// Round-number ticks covering [0, max]: 0, s, 2s, ... up to the first tick
// >= max, where s is 1, 2 or 5 × 10^k, chosen for about `target` intervals
// (target >= 1). The last tick is the axis's end. max <= 0 gives 0 and 1.
std::vector<Tick> RoundTicks(double max, int target = 5);

// x of percentile p (0..100, p < 100) on the log axis above.
double PercentileX(double p);

// The last x worth plotting for `count` samples: log10(count), the nines
// that `count` samples resolve (the 1000th of 1000 is p99.9), in [1, 6].
double PercentileAxisEnd(int64_t count);

// Ticks at 0%, 50%, 90%, 99%, 99.9%, ... up to `x_end` (labels "50%" etc.).
std::vector<Tick> PercentileTicks(double x_end);

// The seconds of `series` that lie wholly inside a run of `duration_s`:
// the last one is dropped when the run ended part-way through it (its
// counts would read as a collapse in throughput).
std::vector<SecondStats> FullSeconds(const std::vector<SecondStats>& series, double duration_s);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points = {};  // (x, y), drawn in this order
  std::vector<std::string> point_labels = {};  // empty, or one per point (with markers)
};

struct ChartSpec {
  std::string id;  // the SVG's id (data-chart): the rendering test finds charts by it
  std::string title, x_label, y_label;
  bool percentile_x = false;  // x is PercentileX(p), ticked by PercentileTicks
  bool markers = false;       // a circle on every point
  double x_end = 0;           // percentile_x: the axis end; otherwise from the data
};

// An inline <svg> line chart of `series` with round-number axes from 0 (x
// from 0 too), a grid, a legend, and the title above.
std::string LineChartSvg(const ChartSpec& spec, const std::vector<Series>& series);

// `s` with <, >, &, " escaped for HTML text and attribute values.
std::string HtmlEscape(const std::string& s);

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_CHART_H_
