// A latency histogram of bounded relative error (HdrHistogram-style
// log-linear buckets): every recorded value lands in a bucket whose width is
// at most 1/kSubBuckets of its lower bound, so any reported percentile is
// within 1/128 (< 0.8%) of the true one. Values are non-negative integers
// (nanoseconds here) up to 2^62. Not thread-safe: one per thread, Merge().
#ifndef ATTENTION_CLIENT_LOADTEST_HISTOGRAM_H_
#define ATTENTION_CLIENT_LOADTEST_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace attention::loadtest {

class Histogram {
 public:
  static constexpr int kSubBits = 7;  // 128 sub-buckets per power of two
  static constexpr int64_t kSubBuckets = int64_t{1} << kSubBits;

  Histogram();

  void Record(int64_t value);
  void Merge(const Histogram& other);
  void Reset();

  int64_t count() const { return count_; }
  int64_t min() const { return count_ ? min_ : 0; }
  int64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }
  // The value at percentile p (0..100): the upper bound of the bucket holding
  // the ceil(p/100 · count)-th smallest value, clamped to [min, max].
  int64_t Percentile(double p) const;

  // Non-empty buckets as (upper bound, count), ascending; for plots.
  std::vector<std::pair<int64_t, int64_t>> Buckets() const;

 private:
  static int Index(int64_t value);
  static int64_t UpperBound(int index);

  std::vector<int64_t> counts_;
  int64_t count_ = 0, min_ = 0, max_ = 0;
  __int128 sum_ = 0;
};

}  // namespace attention::loadtest

#endif  // ATTENTION_CLIENT_LOADTEST_HISTOGRAM_H_
