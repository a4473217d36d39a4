// Element and byte counts: -1, never a wrapped value, when they overflow.
#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace attention {
namespace {

TEST(TensorSizes, CountsOfOrdinaryShapes) {
  EXPECT_EQ(NumElements({2, 3, 4}), 24);
  EXPECT_EQ(NumElements({}), 1);
  EXPECT_EQ(NumElements({5, 0}), 0);
  EXPECT_EQ(NumBytes({2, 3, 4}, 2), 48);
  EXPECT_EQ(NumBytes({5, 0}, 4), 0);
}

TEST(TensorSizes, OverflowIsMinusOneNotAWrappedCount) {
  const int64_t big = (int64_t{1} << 62) + 1;
  EXPECT_EQ(NumElements({big, 2}), -1);
  EXPECT_EQ(NumElements({3, -1}), -1);
  EXPECT_EQ(NumElements({1, 1, big, 1}), big);
  // The element count fits; its bytes do not (they wrapped to 4).
  EXPECT_EQ(NumBytes({1, 1, big, 1}, 4), -1);
  EXPECT_EQ(NumBytes({1, (int64_t{1} << 55) + 1, 128}, 4), -1);
  EXPECT_EQ(NumBytes({big}, 1), big);
  EXPECT_EQ(NumBytes({2}, -1), -1);
}

}  // namespace
}  // namespace attention
