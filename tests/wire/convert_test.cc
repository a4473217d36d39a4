// The wire conversion: the one DType mapping, and every refused tensor is
// INVALID_ARGUMENT naming its field before anything is allocated.
#include "wire/convert.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace attention::wire {
namespace {

pb::Tensor Float32(std::vector<int64_t> shape, size_t data_bytes) {
  pb::Tensor t;
  t.set_dtype(pb::DTYPE_FLOAT32);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  t.set_data(std::string(data_bytes, '\0'));
  return t;
}

TEST(WireDType, EveryCoreDTypeRoundTrips) {
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBfloat16, DType::kBool}) {
    SCOPED_TRACE(DTypeName(d));
    EXPECT_EQ(ToCoreDType(ToProtoDType(d)), d);
    EXPECT_EQ(pb::DType_Name(ToProtoDType(d)), absl::StrCat("DTYPE_", DTypeName(d)));
  }
  EXPECT_EQ(ToCoreDType(pb::DTYPE_UNSPECIFIED), DType::kFloat32);
}

TEST(WireTensor, Float16DecodesToFloat32) {
  pb::Tensor t;
  t.set_dtype(pb::DTYPE_FLOAT16);
  t.add_shape(2);
  const uint16_t halves[2] = {FloatToHalf(1.5f), FloatToHalf(-2.0f)};
  t.set_data(std::string(reinterpret_cast<const char*>(halves), sizeof(halves)));
  auto x = TensorFromProto(t, "query", {1, "[N]"}, 0);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(x->values(), (std::vector<float>{1.5f, -2.0f}));
}

TEST(WireTensor, WrongDataLengthIsNamedWithTheExpectedBytes) {
  auto x = TensorFromProto(Float32({2, 3}, 20), "key", {2, "[M, N]"}, 0);
  ASSERT_EQ(x.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(x.status().message(), "key: data expected 24 bytes")) << x.status();
}

// With no element limit, a byte count that overflows int64 used to wrap:
// [1, 1, 2^62 + 1, 1] float32 "needed" 4 bytes, so 4 bytes of data passed
// and decoding read 2^62 floats (the server's SIGSEGV); a Decode chunk of
// [1, 2^55 + 1, 128] "needed" 512 and was then allocated (std::length_error).
struct HugeShape {
  std::string name;
  std::vector<int64_t> shape;
  size_t data_bytes;
};

void PrintTo(const HugeShape& h, std::ostream* os) { *os << h.name; }

class WireHugeShape : public testing::TestWithParam<HugeShape> {};

TEST_P(WireHugeShape, IsInvalidArgumentNamingTheFieldWithoutLimits) {
  const pb::Tensor t = Float32(GetParam().shape, GetParam().data_bytes);
  auto decoded = TensorFromProto(t, "tokens", {}, /*max_elements=*/0);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(decoded.status().message(), "tokens: ")) << decoded.status();

  Tensor storage;
  auto ref = RefFromProto(t, "key", {}, /*max_elements=*/0, &storage);
  EXPECT_EQ(ref.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(ref.status().message(), "key: ")) << ref.status();

  pb::Mask m;
  *m.mutable_keep() = t;
  auto mask = MaskFromProto(m, "mask", /*max_elements=*/0);
  EXPECT_EQ(mask.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(mask.status().message(), "mask.keep: ")) << mask.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, WireHugeShape,
    testing::Values(HugeShape{"AttendKey", {1, 1, (int64_t{1} << 62) + 1, 1}, 4},
                    HugeShape{"DecodeChunk", {1, (int64_t{1} << 55) + 1, 128}, 4},
                    HugeShape{"DecodeChunkWrappedBytes", {1, (int64_t{1} << 55) + 1, 128}, 512}),
    [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace attention::wire
