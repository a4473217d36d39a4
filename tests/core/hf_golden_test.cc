// Layers of real model families against Hugging Face transformers' own
// attention modules: tests/golden/hf holds each module's state_dict under
// its HF names, its input and its output, recorded by
// tests/golden/make_hf_golden.py (Llama, Qwen2, Qwen3, Mistral, Gemma 2,
// gpt-oss, GLM, Cohere, StableLM, DeepSeek-V2). Each layer is loaded from
// its .safetensors by prefix, as a server loads a checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/decode.h"
#include "core/module.h"
#include "core/safetensors.h"
#include "tests/core/hf_cases.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

class HfGolden : public testing::TestWithParam<HfCase> {};

TEST_P(HfGolden, ForwardMatchesTransformersAndDecodeMatchesForward) {
  const HfCase& c = GetParam();
  auto file = ReadSafetensors(c.Path());
  ASSERT_OK(file);
  const Tensor x = file->at("hidden_states"), want = file->at("output");
  ASSERT_EQ(x.dim(1), 11);
  for (DType compute : {DType::kFloat32, DType::kBfloat16}) {
    SCOPED_TRACE(DTypeName(compute));
    ModuleConfig config = ConfigOf(c);
    ASSERT_EQ(config.d_model, x.dim(2));
    config.compute_dtype = compute;
    auto weights = SelectLayerWeights(*file, c.Str("prefix"), config);
    ASSERT_OK(weights);
    weights->erase("hidden_states");
    weights->erase("output");
    auto created = AttentionModule::Create(config, std::move(*weights));
    ASSERT_OK(created);
    std::shared_ptr<const AttentionModule> m = std::move(*created);
    ForwardInput in;
    in.query = &x;
    in.mask.causal = true;
    auto got = m->Forward(in);
    ASSERT_OK(got);
    // bf16: the precision issue's 1e-2 at the recorded layers' usual weight
    // scale (0.2). bf16 rounds q and k to 8 significant bits, so a score's
    // error grows with the score, which grows as the square of the weights'
    // scale: the llama3/yarn layers (scale 0.5, for their scaling to show
    // within 11 tokens) get (0.5 / 0.2)² times as much.
    const double init = c.Double("init") / 0.2;
    const double bound = compute == DType::kFloat32 ? 1e-4 : 1e-2 * std::max(1.0, init * init);
    EXPECT_LT(RelError(got->output, want), bound);
    // MLA decodes in the absorbed form: its Forward in that form is the
    // one Decode equals (in bf16 the two forms round at other places).
    if (config.variant == Variant::kMla) {
      in.mla_form = MlaForm::kAbsorbed;
      got = m->Forward(in);
      ASSERT_OK(got);
      EXPECT_LT(RelError(got->output, want), bound);
    }
    auto pool = KvBlockPool::Create(1 << 22, 4 << 10);
    ASSERT_OK(pool);
    auto session = DecodeSession::Create(m, x.dim(0), 0, DType::kFloat32, pool->get());
    ASSERT_OK(session);
    int64_t t0 = 0;
    for (int64_t n : {5, 1, 1, 3, 1}) {
      auto step = (*session)->Step(Slice(x, t0, n));
      ASSERT_OK(step);
      EXPECT_LT(RelError(step->output, Slice(got->output, t0, n)),
                compute == DType::kFloat32 ? 1e-4 : 1e-3)
          << "chunk at " << t0;
      t0 += n;
    }
  }
}

// The families of the issue are all recorded (the generator checks that
// what each brings, a window, a cap, sinks, QK-norm, interleaved rope,
// changes the output).
TEST(HfGoldenData, EveryFamilyIsRecorded) {
  std::map<std::string, int> families;
  for (const HfCase& c : LoadCases()) ++families[c.Str("family")];
  for (const char* f : {"llama", "qwen2", "qwen3", "mistral", "gemma2", "gpt_oss", "deepseek_v2"}) {
    EXPECT_GE(families[f], 1) << f;
  }
  std::map<std::string, int> scalings;
  for (const HfCase& c : LoadCases()) ++scalings[c.Str("rope_scaling")];
  for (const char* s : {"linear", "llama3", "yarn"}) EXPECT_GE(scalings[s], 1) << s;
}

INSTANTIATE_TEST_SUITE_P(Families, HfGolden, testing::ValuesIn(LoadCases()),
                         [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace attention
