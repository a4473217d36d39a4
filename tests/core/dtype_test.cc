// FP16/BF16 <-> FP32 conversions: exhaustive round trips and rounding rules.
#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace attention {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(Dtype, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f)))) << h;
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << h;
  }
}

TEST(Dtype, HalfKnownValues) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // rounds up to infinity
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);             // tie to even: 0
  EXPECT_EQ(FloatToHalf(std::ldexp(1.5f, -25)), 0x0001);             // above the tie
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie to even (down)
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie to even (up)
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
}

TEST(Dtype, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBfloat16(1.0f), 0x3f80);
  EXPECT_EQ(Bfloat16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(FloatToBfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(FloatToBfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bfloat16ToFloat(FloatToBfloat16(std::nanf("")))));
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = Bfloat16ToFloat(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      EXPECT_EQ(FloatToBfloat16(f), b);
    }
  }
}

TEST(Dtype, BulkConversionsEqualScalar) {
  std::vector<float> values;
  for (int i = -3000; i < 3000; ++i) values.push_back(static_cast<float>(i) * 0.37f + 1e-3f);
  values.push_back(1e-7f);
  values.push_back(-70000.0f);
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<uint16_t> h(n), b(n);
  FloatToHalf(values.data(), h.data(), n);
  FloatToBfloat16(values.data(), b.data(), n);
  std::vector<float> back_h(n), back_b(n);
  HalfToFloat(h.data(), back_h.data(), n);
  Bfloat16ToFloat(b.data(), back_b.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(h[i], FloatToHalf(values[i])) << values[i];
    EXPECT_EQ(b[i], FloatToBfloat16(values[i])) << values[i];
    EXPECT_EQ(Bits(back_h[i]), Bits(HalfToFloat(h[i])));
  }
}

// The vector loops of FloatToBfloat16 and RoundToBfloat16 (16 and 8 lanes)
// equal the scalar rounding on every kind of value: ties, values that round
// up into the next binade or to infinity, subnormals, infinities and NaNs
// (quieted, sign kept).
TEST(Dtype, Bfloat16VectorRoundingEqualsScalar) {
  std::vector<uint32_t> bits = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu, 0xff7fffffu,
                                0x00000001u, 0x807fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                0x7f800001u, 0xff800123u, 0x00008000u, 0x3f7fffffu, 0x0u,
                                0x80000000u, 0x477fe000u};
  std::mt19937 gen(3);
  for (int i = 0; i < 4000; ++i) bits.push_back(static_cast<uint32_t>(gen()));
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) std::memcpy(&values[i], &bits[i], 4);
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<uint16_t> b(n);
  FloatToBfloat16(values.data(), b.data(), n);
  std::vector<float> rounded = values;
  RoundToBfloat16(rounded.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t want = FloatToBfloat16(values[i]);
    EXPECT_EQ(b[i], want) << std::hex << bits[i];
    EXPECT_EQ(Bits(rounded[i]), static_cast<uint32_t>(want) << 16) << std::hex << bits[i];
  }
}

TEST(Dtype, WireDecodeAndEncodeFromUnalignedBytes) {
  const std::vector<float> values = {1.5f, -2.25f, 0.0f, 3.0e4f, -1e-3f};
  const int64_t n = static_cast<int64_t>(values.size());
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBfloat16}) {
    std::vector<unsigned char> wire(1 + n * DTypeSize(dt));
    EncodeFromFloat(dt, values.data(), n, wire.data() + 1);  // odd address
    std::vector<float> back(n);
    DecodeToFloat(dt, wire.data() + 1, n, back.data());
    for (int64_t i = 0; i < n; ++i) {
      const double tol = dt == DType::kFloat32 ? 0.0 : dt == DType::kFloat16 ? 1e-3 : 8e-3;
      EXPECT_NEAR(back[i], values[i], tol * std::abs(values[i])) << DTypeName(dt);
    }
  }
  const unsigned char bools[4] = {0, 1, 2, 0};
  float out[4];
  DecodeToFloat(DType::kBool, bools, 4, out);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{0, 1, 1, 0}));
}

}  // namespace
}  // namespace attention
