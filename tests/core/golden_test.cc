// Golden tests: the core against outputs of the PyTorch reference modules
// (tests/golden/make_golden.py), read from the committed .npy files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/module.h"
#include "core/npy.h"
#include "core/sdpa.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

constexpr double kTolerance = 1e-4;      // relative, float32
constexpr double kBf16Tolerance = 1e-2;  // relative, bf16 compute (docs/API.md, Precision)

struct GoldenCase {
  std::string name;
  std::map<std::string, std::string> keys;

  int64_t Int(const std::string& k) const {
    int64_t v = 0;
    EXPECT_TRUE(absl::SimpleAtoi(keys.at(k), &v)) << name << ": " << k;
    return v;
  }
  double Double(const std::string& k) const {
    double v = 0;
    EXPECT_TRUE(absl::SimpleAtod(keys.at(k), &v)) << name << ": " << k;
    return v;
  }
  bool Has(const std::string& k) const { return keys.count(k) != 0; }
  std::string Path(const std::string& file) const {
    return std::string(ATTN_GOLDEN_DIR) + "/" + name + "/" + file;
  }
};

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name; }

std::vector<GoldenCase> LoadManifest() {
  std::vector<GoldenCase> cases;
  std::ifstream in(std::string(ATTN_GOLDEN_DIR) + "/manifest.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    GoldenCase c;
    c.name = parts[0];
    for (size_t i = 1; i < parts.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
      c.keys[kv.first] = kv.second;
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<GoldenCase> CasesOfKind(const std::string& kind) {
  std::vector<GoldenCase> out;
  for (auto& c : LoadManifest()) {
    if (c.keys["kind"] == kind) out.push_back(c);
  }
  return out;
}

Tensor Load(const std::string& path) {
  auto t = ReadNpyAsFloat(path);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : Tensor();
}

MaskSpec MaskOf(const GoldenCase& c) {
  MaskSpec m;
  m.causal = c.Int("causal") != 0;
  if (c.Has("key_lengths")) {
    for (absl::string_view s : absl::StrSplit(c.keys.at("key_lengths"), ',')) {
      int64_t v = 0;
      EXPECT_TRUE(absl::SimpleAtoi(s, &v));
      m.key_lengths.push_back(v);
    }
  }
  if (c.Has("keep")) {
    auto a = ReadNpy(c.Path("keep.npy"));
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok()) {
      m.keep_shape = a->shape;
      m.keep = a->bytes;
    }
  }
  return m;
}

std::string CaseName(const testing::TestParamInfo<GoldenCase>& p) { return p.param.name; }

class GoldenSdpa : public testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenSdpa, MatchesPyTorchReference) {
  const GoldenCase& c = GetParam();
  const Tensor q = Load(c.Path("query.npy")), k = Load(c.Path("key.npy")),
               v = Load(c.Path("value.npy"));
  const Tensor want_out = Load(c.Path("output.npy")), want_w = Load(c.Path("weights.npy"));
  const SdpaOptions options{static_cast<float>(c.Double("scale")), true};
  auto got = Attend(q, k, v, MaskOf(c), options);
  ASSERT_OK(got);
  EXPECT_LT(RelError(got->output, want_out), kTolerance);
  EXPECT_LT(RelError(got->weights, want_w), kTolerance);
  auto ref = AttendReference(q, k, v, MaskOf(c), options);
  ASSERT_OK(ref);
  EXPECT_LT(RelError(ref->output, want_out), kTolerance);
}

// bf16 compute (operands rounded to bfloat16, float32 accumulation) stays
// within the precision contract of the float64 reference (AttendReference:
// loops in double) on every mask kind of the golden cases; and it is the
// reference computed on the rounded operands, but for the rounding of the
// probabilities to bf16 before P·V (at most 2^-9 relative each).
TEST_P(GoldenSdpa, Bf16ComputeIsWithinItsBoundOfTheDoubleReference) {
  const GoldenCase& c = GetParam();
  const Tensor q = Load(c.Path("query.npy")), k = Load(c.Path("key.npy")),
               v = Load(c.Path("value.npy"));
  SdpaOptions options{static_cast<float>(c.Double("scale")), true};
  auto ref = AttendReference(q, k, v, MaskOf(c), options);
  ASSERT_OK(ref);
  options.compute_dtype = DType::kBfloat16;
  auto got = Attend(q, k, v, MaskOf(c), options);
  ASSERT_OK(got);
  EXPECT_LT(RelError(got->output, ref->output), kBf16Tolerance);
  EXPECT_LT(RelError(got->weights, ref->weights), kBf16Tolerance);
  EXPECT_GT(RelError(got->output, ref->output), 0.0) << "bf16 rounding had no effect";
  auto rounded_ref = AttendReference(q, k, v, MaskOf(c), options);
  ASSERT_OK(rounded_ref);
  EXPECT_LT(RelError(got->output, rounded_ref->output), 5e-3);
  EXPECT_LT(RelError(got->weights, rounded_ref->weights), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenSdpa, testing::ValuesIn(CasesOfKind("sdpa")), CaseName);

ModuleConfig ConfigOf(const GoldenCase& c) {
  ModuleConfig config;
  const std::string variant = c.keys.at("variant");
  config.d_model = c.Int("d_model");
  config.bias = c.Int("bias") != 0;
  if (variant == "self_attention") {
    config.variant = Variant::kSelfAttention;
    config.d_k = c.Int("d_k");
    config.d_v = c.Int("d_v");
  } else if (variant == "mha") {
    config.variant = Variant::kMha;
    config.num_heads = c.Int("num_heads");
  } else if (variant == "gqa") {
    config.variant = Variant::kGqa;
    config.num_heads = c.Int("num_q_heads");
    config.num_kv_heads = c.Int("num_kv_heads");
  } else if (variant == "mqa") {
    config.variant = Variant::kMqa;
    config.num_heads = c.Int("num_heads");
  } else {
    config.variant = Variant::kMla;
    config.num_heads = c.Int("num_heads");
    config.q_lora_rank = c.Int("q_lora_rank");
    config.kv_lora_rank = c.Int("kv_lora_rank");
    config.qk_nope_head_dim = c.Int("qk_nope_head_dim");
    config.qk_rope_head_dim = c.Int("qk_rope_head_dim");
    config.v_head_dim = c.Int("v_head_dim");
    config.rope_theta = c.Double("rope_theta");
  }
  return config;
}

WeightMap StateDictOf(const GoldenCase& c) {
  WeightMap weights;
  for (const auto& entry : std::filesystem::directory_iterator(c.Path("sd"))) {
    std::string name = entry.path().filename().string();
    name = name.substr(0, name.size() - 4);  // strip ".npy"
    weights.emplace(name, Load(entry.path().string()));
  }
  return weights;
}

// A module case's inputs (key and value only for cross-attention), mask
// and expected output and weights.
struct GoldenInputs {
  explicit GoldenInputs(const GoldenCase& c)
      : golden(c),
        query(Load(c.Path("query.npy"))),
        output(Load(c.Path("output.npy"))),
        weights(Load(c.Path("weights.npy"))) {
    if (c.Int("cross") != 0) {
      key = Load(c.Path("key.npy"));
      value = Load(c.Path("value.npy"));
    }
  }
  ForwardInput Input() const {
    ForwardInput in;
    in.query = &query;
    if (golden.Int("cross") != 0) {
      in.key = &key;
      in.value = &value;
    }
    in.mask = MaskOf(golden);
    in.return_weights = true;
    return in;
  }
  const GoldenCase& golden;
  Tensor query, key, value, output, weights;
};

// MLA runs in both of its forms.
std::vector<MlaForm> FormsOf(const ModuleConfig& config) {
  if (config.variant == Variant::kMla) return {MlaForm::kNaive, MlaForm::kAbsorbed};
  return {MlaForm::kNaive};
}

class GoldenModule : public testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenModule, MatchesPyTorchReference) {
  const GoldenCase& c = GetParam();
  const ModuleConfig config = ConfigOf(c);
  auto module = AttentionModule::Create(config, StateDictOf(c));
  ASSERT_OK(module);
  const GoldenInputs inputs(c);
  ForwardInput in = inputs.Input();
  for (MlaForm form : FormsOf(config)) {
    SCOPED_TRACE(form == MlaForm::kNaive ? "naive" : "absorbed");
    in.mla_form = form;
    auto got = (*module)->Forward(in);
    ASSERT_OK(got);
    EXPECT_LT(RelError(got->output, inputs.output), kTolerance);
    EXPECT_LT(RelError(got->weights, inputs.weights), kTolerance);
    EXPECT_GT(got->flops, 0.0);
  }
}

// Every variant and mask kind with bf16 compute: weights held in bf16,
// products in bf16, against PyTorch's float32 output (itself within 1e-5 of
// float64 here) to the bf16 bound.
TEST_P(GoldenModule, Bf16ComputeIsWithinItsBoundOfPyTorch) {
  const GoldenCase& c = GetParam();
  ModuleConfig config = ConfigOf(c);
  config.compute_dtype = DType::kBfloat16;
  auto module = AttentionModule::Create(config, StateDictOf(c));
  ASSERT_OK(module);
  EXPECT_LT((*module)->parameter_bytes(), 4 * (*module)->parameter_count());
  const GoldenInputs inputs(c);
  ForwardInput in = inputs.Input();
  for (MlaForm form : FormsOf(config)) {
    SCOPED_TRACE(form == MlaForm::kNaive ? "naive" : "absorbed");
    in.mla_form = form;
    auto got = (*module)->Forward(in);
    ASSERT_OK(got);
    EXPECT_LT(RelError(got->output, inputs.output), kBf16Tolerance);
    EXPECT_LT(RelError(got->weights, inputs.weights), kBf16Tolerance);
    EXPECT_GT(RelError(got->output, inputs.output), kTolerance / 100)
        << "bf16 rounding had no effect";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenModule, testing::ValuesIn(CasesOfKind("module")), CaseName);

TEST(Golden, ManifestCoversEveryVariant) {
  std::map<std::string, int> seen;
  for (const auto& c : CasesOfKind("module")) ++seen[c.keys.at("variant")];
  for (const char* v : {"self_attention", "mha", "gqa", "mqa", "mla"}) {
    EXPECT_GE(seen[v], 1) << v;
  }
  EXPECT_GE(CasesOfKind("sdpa").size(), 5u);
}

}  // namespace
}  // namespace attention
