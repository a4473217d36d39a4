// The BERT encoder runner: a tiny random model here; all-MiniLM-L6-v2
// against sentence-transformers' embeddings where ATTN_MINILM_DIR names its
// directory (tests/examples/run_compare_model_test.sh sets it after the
// PyPI install; skipped otherwise).
#include "client/encoder_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/npy.h"
#include "core/safetensors.h"
#include "tests/core/test_util.h"

namespace attention::client {
namespace {

namespace fs = std::filesystem;

// A 2-layer BERT, d 8, 2 heads, intermediate 16, random weights, in a
// fresh directory.
std::string WriteTinyModel(const std::string& name) {
  const fs::path dir = fs::path(testing::TempDir()) / name;
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"vocab_size": 8, "hidden_size": 8,
      "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 16,
      "max_position_embeddings": 16, "layer_norm_eps": 1e-12, "hidden_act": "gelu"})";
  std::ofstream(dir / "vocab.txt") << "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\ncat\nsat\n.\n";
  TensorMap t;
  uint32_t seed = 1;
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    t.emplace(n, RandomTensor(std::move(shape), seed++));
  };
  add("embeddings.word_embeddings.weight", {8, 8});
  add("embeddings.position_embeddings.weight", {16, 8});
  add("embeddings.token_type_embeddings.weight", {2, 8});
  add("embeddings.LayerNorm.weight", {8});
  add("embeddings.LayerNorm.bias", {8});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* lin : {"attention.self.query", "attention.self.key", "attention.self.value",
                            "attention.output.dense"}) {
      add(p + lin + ".weight", {8, 8});
      add(p + lin + ".bias", {8});
    }
    for (const char* ln : {"attention.output.LayerNorm", "output.LayerNorm"}) {
      add(p + ln + ".weight", {8});
      add(p + ln + ".bias", {8});
    }
    add(p + "intermediate.dense.weight", {16, 8});
    add(p + "intermediate.dense.bias", {16});
    add(p + "output.dense.weight", {8, 16});
    add(p + "output.dense.bias", {8});
  }
  std::ofstream(dir / "model.safetensors", std::ios::binary) << SafetensorsImage(t);
  return dir.string();
}

TEST(EncoderModel, PaddingDoesNotChangeASentencesEmbedding) {
  auto model = EncoderModel::Load(WriteTinyModel("tiny_bert"));
  ASSERT_OK(model);
  std::vector<std::unique_ptr<AttentionModule>> layers;
  for (int l = 0; l < 2; ++l) {
    auto m = AttentionModule::Create((*model)->AttentionConfig(), (*model)->AttentionWeights(l));
    ASSERT_OK(m);
    layers.push_back(*std::move(m));
  }
  const TokenBatch alone = (*model)->Tokenize({"The cat."});
  const TokenBatch padded = (*model)->Tokenize({"The cat.", "the cat sat, the cat sat."});
  EXPECT_EQ(alone.length, 5);  // [CLS] the cat . [SEP]
  EXPECT_EQ(padded.lengths, (std::vector<int64_t>{5, 10}));  // ',' is [UNK]
  EXPECT_EQ(padded.tokens(), 15);
  auto a = (*model)->Embed(alone, LocalAttention(layers));
  auto b = (*model)->Embed(padded, LocalAttention(layers));
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_EQ(b->shape(), (std::vector<int64_t>{2, 8}));
  Tensor first({1, 8}, std::vector<float>(b->data(), b->data() + 8));
  EXPECT_GT(RowCosines(*a, first)[0], 1 - 1e-6);
  EXPECT_NEAR(RowCosines(*b, *b)[1], 1.0, 1e-6);
  double norm = 0;
  for (int k = 0; k < 8; ++k) norm += a->data()[k] * a->data()[k];
  EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
}

TEST(EncoderModel, MissingFileIsNotFoundAndBadTensorIsNamed) {
  EXPECT_EQ(EncoderModel::Load("/nonexistent/model").status().code(),
            absl::StatusCode::kNotFound);
  const std::string dir = WriteTinyModel("tiny_bert_bad");
  TensorMap t = ReadSafetensors(dir + "/model.safetensors").value();
  t.erase("encoder.layer.1.output.dense.bias");
  std::ofstream(dir + "/model.safetensors", std::ios::binary) << SafetensorsImage(t);
  const absl::Status s = EncoderModel::Load(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("encoder.layer.1.output.dense.bias"), std::string::npos) << s;
}

TEST(EncoderModel, AttentionOfAnotherShapeIsInternal) {
  auto model = EncoderModel::Load(WriteTinyModel("tiny_bert_shape"));
  ASSERT_OK(model);
  const LayerAttention wrong = [](int64_t, const Tensor&,
                                  const std::vector<int64_t>&) -> absl::StatusOr<Tensor> {
    return Tensor({1, 1, 8});
  };
  const absl::Status s = (*model)->Embed((*model)->Tokenize({"the cat"}), wrong).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("layer 0"), std::string::npos) << s;
}

// tests/examples/minilm_reference.npy: sentence-transformers' embeddings of
// tests/examples/minilm_sentences.txt.
TEST(EncoderModel, MiniLmLocalEmbeddingsEqualSentenceTransformers) {
  const char* dir = std::getenv("ATTN_MINILM_DIR");
  if (dir == nullptr || *dir == '\0') {
    GTEST_SKIP() << "ATTN_MINILM_DIR is not set (tests/examples/run_compare_model_test.sh sets it)";
  }
  auto model = EncoderModel::Load(dir);
  ASSERT_OK(model);
  std::vector<std::string> sentences;
  std::ifstream in(std::string(ATTN_EXAMPLES_DIR) + "/minilm_sentences.txt");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) sentences.push_back(line);
  }
  ASSERT_EQ(sentences.size(), 8u);
  auto reference = ReadNpyAsFloat(std::string(ATTN_EXAMPLES_DIR) + "/minilm_reference.npy");
  ASSERT_OK(reference);
  std::vector<std::unique_ptr<AttentionModule>> layers;
  for (int64_t l = 0; l < (*model)->config().num_layers; ++l) {
    auto m = AttentionModule::Create((*model)->AttentionConfig(), (*model)->AttentionWeights(l));
    ASSERT_OK(m);
    layers.push_back(*std::move(m));
  }
  auto embeddings = (*model)->Embed((*model)->Tokenize(sentences), LocalAttention(layers));
  ASSERT_OK(embeddings);
  ASSERT_EQ(embeddings->shape(), reference->shape());
  const std::vector<double> cosines = RowCosines(*embeddings, *reference);
  for (size_t i = 0; i < cosines.size(); ++i) {
    EXPECT_GE(cosines[i], 0.9999) << sentences[i];
  }
}

}  // namespace
}  // namespace attention::client
