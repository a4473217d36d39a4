// .npy reading and writing.
#include "core/npy.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

std::string TempPath(const std::string& name) {
  return testing::TempDir() + "/" + name;
}

TEST(Npy, Float32RoundTrip) {
  const Tensor t = RandomTensor({2, 3, 5}, 1);
  const std::string path = TempPath("round_trip.npy");
  ASSERT_OK(WriteNpy(path, t));
  auto back = ReadNpyAsFloat(path);
  ASSERT_OK(back);
  EXPECT_EQ(back->shape(), t.shape());
  EXPECT_EQ(back->values(), t.values());
  auto raw = ReadNpy(path);
  ASSERT_OK(raw);
  EXPECT_EQ(raw->descr, "<f4");
}

TEST(Npy, Float16AndVectorShapes) {
  const Tensor t({3}, {1.0f, -0.5f, 2048.0f});
  const std::string path = TempPath("half.npy");
  ASSERT_OK(WriteNpy(path, t, DType::kFloat16));
  auto back = ReadNpyAsFloat(path);
  ASSERT_OK(back);
  EXPECT_EQ(back->shape(), std::vector<int64_t>{3});
  EXPECT_EQ(back->values(), t.values());
}

TEST(Npy, ReadsGoldenBoolMask) {
  auto a = ReadNpy(std::string(ATTN_GOLDEN_DIR) + "/sdpa_keep_b11l_scale/keep.npy");
  ASSERT_OK(a);
  EXPECT_EQ(a->descr, "|u1");
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 1, 1, 7}));
  EXPECT_EQ(a->bytes.size(), 14u);
}

TEST(Npy, ErrorsNameTheProblem) {
  EXPECT_EQ(ReadNpy(TempPath("does_not_exist.npy")).status().code(), absl::StatusCode::kNotFound);
  const std::string path = TempPath("garbage.npy");
  std::ofstream(path) << "not numpy at all";
  auto r = ReadNpy(path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "not a .npy file")) << r.status();

  // A header promising more data than the file holds.
  const Tensor t = RandomTensor({4, 4}, 1);
  const std::string short_path = TempPath("short.npy");
  ASSERT_OK(WriteNpyRaw(short_path, "<f4", {4, 4}, t.data(), 10 * 4));
  auto s = ReadNpy(short_path);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "shorter than shape [4, 4]")) << s.status();
}

}  // namespace
}  // namespace attention
