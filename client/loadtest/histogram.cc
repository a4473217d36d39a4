#include "client/loadtest/histogram.h"

#include <algorithm>
#include <cmath>

namespace attention::loadtest {
namespace {

constexpr int kMaxExponent = 62 - Histogram::kSubBits;  // values < 2^62

}  // namespace

Histogram::Histogram() : counts_((kMaxExponent + 2) * kSubBuckets, 0) {}

// Values below kSubBuckets map to themselves (exact). Above, a value with its
// top bit at position e (>= kSubBits) keeps its kSubBits bits after the top
// one: bucket (e - kSubBits + 1) · kSubBuckets + those bits.
int Histogram::Index(int64_t v) {
  if (v < kSubBuckets) return static_cast<int>(v);
  const int e = 63 - __builtin_clzll(static_cast<uint64_t>(v));
  const int shift = e - kSubBits;
  const int64_t sub = (v >> shift) & (kSubBuckets - 1);
  return static_cast<int>((shift + 1) * kSubBuckets + sub);
}

int64_t Histogram::UpperBound(int index) {
  if (index < kSubBuckets) return index;
  const int shift = index / static_cast<int>(kSubBuckets) - 1;
  const int64_t sub = index % kSubBuckets;
  return ((kSubBuckets + sub + 1) << shift) - 1;
}

void Histogram::Record(int64_t v) {
  v = std::clamp<int64_t>(v, 0, (int64_t{1} << 62) - 1);
  ++counts_[Index(v)];
  if (count_ == 0 || v < min_) min_ = v;
  max_ = std::max(max_, v);
  ++count_;
  sum_ += v;
}

void Histogram::Merge(const Histogram& o) {
  if (o.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  min_ = count_ == 0 ? o.min_ : std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
  count_ += o.count_;
  sum_ += o.sum_;
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = min_ = max_ = 0;
  sum_ = 0;
}

int64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  const int64_t rank =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p / 100.0 * static_cast<double>(count_))));
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(UpperBound(static_cast<int>(i)), min_, max_);
  }
  return max_;
}

std::vector<std::pair<int64_t, int64_t>> Histogram::Buckets() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] != 0) out.emplace_back(UpperBound(static_cast<int>(i)), counts_[i]);
  }
  return out;
}

}  // namespace attention::loadtest
