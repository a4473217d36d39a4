// The load tester's histogram: bounded relative error, merging, percentiles.
#include "client/loadtest/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace attention::loadtest {
namespace {

TEST(Histogram, PercentilesAreWithinTheRelativeErrorBound) {
  std::mt19937_64 gen(1);
  std::lognormal_distribution<double> dist(13.0, 1.5);  // ~0.4 ms median, long tail (ns)
  std::vector<int64_t> values;
  Histogram h;
  for (int i = 0; i < 100000; ++i) {
    const int64_t v = static_cast<int64_t>(dist(gen));
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    const int64_t exact = values[static_cast<size_t>(std::ceil(p / 100 * values.size())) - 1];
    const double err = std::abs(static_cast<double>(h.Percentile(p)) - exact) / exact;
    EXPECT_LE(err, 1.0 / Histogram::kSubBuckets) << "p" << p;
  }
  EXPECT_EQ(h.count(), 100000);
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
}

TEST(Histogram, SmallValuesAreExactAndMergeAdds) {
  Histogram a, b;
  for (int v = 0; v < 100; ++v) a.Record(v);
  for (int v = 100; v < 200; ++v) b.Record(v);
  EXPECT_EQ(a.Percentile(50), 49);
  a.Merge(b);
  EXPECT_EQ(a.count(), 200);
  EXPECT_EQ(a.min(), 0);
  EXPECT_EQ(a.max(), 199);
  EXPECT_NEAR(a.Percentile(50), 99, 1);
  EXPECT_DOUBLE_EQ(a.mean(), 99.5);
  EXPECT_LE(a.Percentile(90), a.Percentile(99));
  int64_t total = 0;
  for (const auto& [upper, n] : a.Buckets()) total += n;
  EXPECT_EQ(total, 200);
}

}  // namespace
}  // namespace attention::loadtest
