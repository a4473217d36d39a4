// .safetensors images built here byte by byte (the format is simple and
// fixed: 8-byte length, JSON header, data), read back exactly; malformed
// ones refused naming the tensor; one layer picked out by prefix and HF names.
#include "core/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/dtype.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

// A file image: tensors given as (name, dtype, shape, raw bytes), laid out
// in order; `header_extra` is spliced into the JSON object.
struct Entry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::string Image(const std::vector<Entry>& entries, const std::string& header_extra = "") {
  std::string header = "{", data;
  for (const Entry& e : entries) {
    std::string shape;
    for (size_t i = 0; i < e.shape.size(); ++i) {
      shape += (i ? "," : "") + std::to_string(e.shape[i]);
    }
    header += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + e.bytes.size()) + "]},";
    data += e.bytes;
  }
  header += header_extra.empty() ? "\"__metadata__\":{\"format\":\"pt\"}}" : header_extra + "}";
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i) & 0xff);
  return out + header + data;
}

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

TEST(Safetensors, ReadsF32F16AndBf16Exactly) {
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.125f, -0.0f, 1e-3f};
  std::vector<uint16_t> f16(f32.size()), bf16(f32.size());
  FloatToHalf(f32.data(), f16.data(), static_cast<int64_t>(f32.size()));
  FloatToBfloat16(f32.data(), bf16.data(), static_cast<int64_t>(f32.size()));
  const std::string image = Image({{"a", "F32", {2, 3}, Bytes(f32)},
                                   {"b", "F16", {6}, Bytes(f16)},
                                   {"c", "BF16", {3, 2}, Bytes(bf16)},
                                   {"scalar", "F32", {}, Bytes(std::vector<float>{7.0f})}});
  auto t = ParseSafetensors(image, "x.safetensors");
  ASSERT_OK(t);
  ASSERT_EQ(t->size(), 4u);
  EXPECT_EQ(t->at("a").shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t->at("a").values(), f32);
  for (size_t i = 0; i < f32.size(); ++i) {
    EXPECT_EQ(t->at("b").data()[i], HalfToFloat(f16[i])) << i;
    EXPECT_EQ(t->at("c").data()[i], Bfloat16ToFloat(bf16[i])) << i;
  }
  EXPECT_EQ(t->at("c").shape(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t->at("scalar").size(), 1);
  EXPECT_EQ(t->at("scalar").data()[0], 7.0f);
}

TEST(Safetensors, ReadsAFile) {
  const std::string path = testing::TempDir() + "/layer.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    out << Image({{"w", "F32", {2}, Bytes(std::vector<float>{1, 2})},
                  {"layers.1.w", "F32", {1}, Bytes(std::vector<float>{3})}});
  }
  auto t = ReadSafetensors(path);
  ASSERT_OK(t);
  EXPECT_EQ(t->at("w").values(), (std::vector<float>{1, 2}));
  EXPECT_EQ(t->at("layers.1.w").values(), (std::vector<float>{3}));
  // Only the prefix's tensors are read.
  auto one = ReadSafetensors(path, 0, "layers.1.");
  ASSERT_OK(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(one->at("layers.1.w").values(), (std::vector<float>{3}));
  // A bound on the prefix's elements together.
  auto bounded = ReadSafetensors(path, 0, "", /*max_total_elements=*/2);
  EXPECT_EQ(bounded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bounded.status().message(), "weights_prefix"));
  std::remove(path.c_str());
  EXPECT_EQ(ReadSafetensors(path).status().code(), absl::StatusCode::kNotFound);
}

TEST(Safetensors, MalformedImagesNameWhatIsWrong) {
  const std::string two = Bytes(std::vector<float>{1, 2});
  struct Case {
    const char* what;
    std::string image;
    const char* expected;
  };
  std::string huge_length = Image({{"w", "F32", {2}, two}});
  huge_length[5] = 1;  // header length past the file
  std::string not_json = Image({{"w", "F32", {2}, two}});
  not_json[8] = '[';
  std::string short_data = Image({{"w", "F32", {2}, two}});
  short_data.resize(short_data.size() - 1);
  const Case cases[] = {
      {"short", "1234", "shorter than the 8-byte header length"},
      {"length", huge_length, "header length"},
      {"json", not_json, "header is not a JSON object"},
      {"dtype", Image({{"w", "I64", {1}, std::string(8, '\0')}}),
       "tensor 'w': dtype expected F32, F16 or BF16, got I64"},
      {"span", Image({{"w", "F32", {3}, two}}), "tensor 'w': data_offsets span 8 bytes"},
      {"outside", short_data, "tensor 'w': data_offsets [0, 8) outside the 7 data bytes"},
      {"entry", Image({}, "\"w\":{\"dtype\":\"F32\"}"), "tensor 'w': expected {"},
      {"shape", Image({}, "\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}"),
       "tensor 'w': shape: expected non-negative integers"},
      // 2^31 · 2^31 · 4 bytes would wrap to 0 in 64 bits.
      {"overflow",
       Image({},
             "\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
             "\"data_offsets\":[0,0]}"),
       "tensor 'w': shape: too many elements"},
  };
  for (const Case& c : cases) {
    auto t = ParseSafetensors(c.image, "m.safetensors");
    ASSERT_FALSE(t.ok()) << c.what;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_TRUE(absl::StrContains(t.status().message(), c.expected))
        << c.what << ": " << t.status().message();
    EXPECT_TRUE(absl::StartsWith(t.status().message(), "m.safetensors")) << c.what;
  }
  auto limited = ParseSafetensors(Image({{"w", "F32", {2}, two}}), "m", /*max_elements=*/1);
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(limited.status().message(), "more than the limit of 1"));
}

TEST(Safetensors, ImagesWrittenReadBackExactly) {
  TensorMap tensors;
  tensors.emplace("b", RandomTensor({3, 5}, 1));
  tensors.emplace("a.bias", RandomTensor({7}, 2));
  auto back = ParseSafetensors(SafetensorsImage(tensors), "image");
  ASSERT_OK(back);
  ASSERT_EQ(back->size(), 2u);
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(back->at(name).shape(), t.shape()) << name;
    EXPECT_EQ(back->at(name).values(), t.values()) << name;
  }
}

TEST(Safetensors, SelectLayerWeightsStripsThePrefixAndMapsHuggingFaceNames) {
  TensorMap all;
  for (const char* name :
       {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.bias", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.1.self_attn.q_proj.weight", "model.embed_tokens.weight"}) {
    all.emplace(name, Tensor({1}));
  }
  ModuleConfig gqa;
  gqa.variant = Variant::kGqa;
  auto layer = SelectLayerWeights(all, "model.layers.0.self_attn.", gqa);
  ASSERT_OK(layer);
  std::vector<std::string> names;
  for (const auto& [name, t] : *layer) names.push_back(name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"W_k.weight", "W_o.weight", "W_q.weight", "W_v.bias"}));
  // MLA keeps DeepSeek's own names (its q_proj is not W_q).
  ModuleConfig mla;
  mla.variant = Variant::kMla;
  auto latent = SelectLayerWeights(all, "model.layers.1.self_attn.", mla);
  ASSERT_OK(latent);
  EXPECT_EQ(latent->count("q_proj.weight"), 1u);
  // No name under the prefix, and one tensor under two names.
  auto none = SelectLayerWeights(all, "model.layers.9.", gqa);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(none.status().message(), "weights_prefix"));
  TensorMap both;
  both.emplace("q_proj.weight", Tensor({1}));
  both.emplace("W_q.weight", Tensor({1}));
  auto twice = SelectLayerWeights(both, "", gqa);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(twice.status().message(), "given under both names"));
}

}  // namespace
}  // namespace attention
