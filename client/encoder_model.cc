#include "client/encoder_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/safetensors.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace attention::client {
namespace {

absl::StatusOr<EncoderConfig> ReadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("model: cannot read ", path));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  EncoderConfig c;
  for (auto [key, out] : {std::pair{"vocab_size", &c.vocab_size},
                          std::pair{"hidden_size", &c.hidden_size},
                          std::pair{"num_attention_heads", &c.num_heads},
                          std::pair{"num_hidden_layers", &c.num_layers},
                          std::pair{"intermediate_size", &c.intermediate_size},
                          std::pair{"max_position_embeddings", &c.max_positions}}) {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", key, " must be a positive integer"));
    }
    *out = j[key].get<int64_t>();
  }
  if (j.contains("layer_norm_eps") && j["layer_norm_eps"].is_number()) {
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  const std::string act = j.value("hidden_act", std::string("gelu"));
  if (act != "gelu") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": hidden_act: expected gelu (erf), got '", act, "'"));
  }
  if (c.hidden_size % c.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": hidden_size ", c.hidden_size,
                                                   " is not divisible by num_attention_heads ",
                                                   c.num_heads));
  }
  return c;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

// Moves tensor `name` out of `tensors`, checking its shape.
absl::StatusOr<Tensor> Take(TensorMap& tensors, const std::string& name,
                            const std::vector<int64_t>& shape) {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    return absl::InvalidArgumentError(absl::StrCat("model.safetensors: no tensor ", name));
  }
  if (it->second.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("model.safetensors: ", name, ": expected ",
                                                   ShapeText(shape), ", got ",
                                                   ShapeText(it->second.shape())));
  }
  Tensor t = std::move(it->second);
  tensors.erase(it);
  return t;
}

Tensor Transpose(const Tensor& w) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  Tensor t({cols, rows});
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t.data()[j * rows + i] = w.data()[i * cols + j];
  return t;
}

// y[r] = x[r] · wt + b for each of `rows` rows (x [rows, in], wt [in, out]):
// blocks of four rows share each row of wt.
void Linear(const float* x, int64_t rows, int64_t in, const Tensor& wt, const Tensor& b,
            float* y) {
  const int64_t out = wt.dim(1);
  const float* w = wt.data();
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    float* y0 = y + r * out;
    for (int q = 0; q < 4; ++q) std::copy(b.data(), b.data() + out, y0 + q * out);
    const float* x0 = x + r * in;
    for (int64_t k = 0; k < in; ++k) {
      const float a0 = x0[k], a1 = x0[in + k], a2 = x0[2 * in + k], a3 = x0[3 * in + k];
      const float* wk = w + k * out;
      for (int64_t j = 0; j < out; ++j) {
        y0[j] += a0 * wk[j];
        y0[out + j] += a1 * wk[j];
        y0[2 * out + j] += a2 * wk[j];
        y0[3 * out + j] += a3 * wk[j];
      }
    }
  }
  for (; r < rows; ++r) {
    float* yr = y + r * out;
    std::copy(b.data(), b.data() + out, yr);
    for (int64_t k = 0; k < in; ++k) {
      const float a = x[r * in + k];
      const float* wk = w + k * out;
      for (int64_t j = 0; j < out; ++j) yr[j] += a * wk[j];
    }
  }
}

void LayerNormRow(float* x, int64_t d, const Tensor& weight, const Tensor& bias, double eps) {
  double mean = 0;
  for (int64_t i = 0; i < d; ++i) mean += x[i];
  mean /= static_cast<double>(d);
  double var = 0;
  for (int64_t i = 0; i < d; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(d);
  const double inv = 1.0 / std::sqrt(var + eps);
  for (int64_t i = 0; i < d; ++i) {
    x[i] = static_cast<float>((x[i] - mean) * inv * weight.data()[i] + bias.data()[i]);
  }
}

}  // namespace

int64_t TokenBatch::tokens() const {
  int64_t n = 0;
  for (int64_t l : lengths) n += l;
  return n;
}

absl::StatusOr<std::unique_ptr<EncoderModel>> EncoderModel::Load(const std::string& dir) {
  const std::filesystem::path root(dir);
  ATTN_ASSIGN_OR_RETURN(EncoderConfig config, ReadConfig((root / "config.json").string()));
  ATTN_ASSIGN_OR_RETURN(WordPieceTokenizer tokenizer,
                        WordPieceTokenizer::FromVocabFile((root / "vocab.txt").string()));
  if (tokenizer.vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("vocab.txt has ", tokenizer.vocab_size(),
                                                   " tokens, config.json's vocab_size is ",
                                                   config.vocab_size));
  }
  // Only the float tensors the computation uses: a BERT checkpoint may also
  // hold int64 ones (embeddings.position_ids), which the reader refuses.
  TensorMap t;
  for (const char* prefix :
       {"embeddings.word_embeddings.", "embeddings.position_embeddings.",
        "embeddings.token_type_embeddings.", "embeddings.LayerNorm.", "encoder."}) {
    ATTN_ASSIGN_OR_RETURN(TensorMap part,
                          ReadSafetensors((root / "model.safetensors").string(), 0, prefix));
    t.merge(part);
  }
  std::unique_ptr<EncoderModel> m(new EncoderModel(config, std::move(tokenizer)));
  const int64_t d = config.hidden_size, ff = config.intermediate_size;
  ATTN_ASSIGN_OR_RETURN(m->word_, Take(t, "embeddings.word_embeddings.weight",
                                       {config.vocab_size, d}));
  ATTN_ASSIGN_OR_RETURN(m->position_, Take(t, "embeddings.position_embeddings.weight",
                                           {config.max_positions, d}));
  auto tt = t.find("embeddings.token_type_embeddings.weight");
  if (tt == t.end() || tt->second.rank() != 2 || tt->second.dim(1) != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.safetensors: embeddings.token_type_embeddings.weight: expected [N, ",
                     d, "]"));
  }
  m->token_type_ = std::move(tt->second);
  ATTN_ASSIGN_OR_RETURN(m->emb_ln_w_, Take(t, "embeddings.LayerNorm.weight", {d}));
  ATTN_ASSIGN_OR_RETURN(m->emb_ln_b_, Take(t, "embeddings.LayerNorm.bias", {d}));
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = absl::StrCat("encoder.layer.", i, ".");
    WeightMap attention;
    for (auto [ours, bert] : {std::pair{"W_q", "attention.self.query"},
                              std::pair{"W_k", "attention.self.key"},
                              std::pair{"W_v", "attention.self.value"},
                              std::pair{"W_o", "attention.output.dense"}}) {
      ATTN_ASSIGN_OR_RETURN(attention[absl::StrCat(ours, ".weight")],
                            Take(t, p + bert + ".weight", {d, d}));
      ATTN_ASSIGN_OR_RETURN(attention[absl::StrCat(ours, ".bias")],
                            Take(t, p + bert + ".bias", {d}));
    }
    m->attention_.push_back(std::move(attention));
    Layer l;
    ATTN_ASSIGN_OR_RETURN(l.ln1_w, Take(t, p + "attention.output.LayerNorm.weight", {d}));
    ATTN_ASSIGN_OR_RETURN(l.ln1_b, Take(t, p + "attention.output.LayerNorm.bias", {d}));
    ATTN_ASSIGN_OR_RETURN(Tensor w1, Take(t, p + "intermediate.dense.weight", {ff, d}));
    ATTN_ASSIGN_OR_RETURN(l.b1, Take(t, p + "intermediate.dense.bias", {ff}));
    ATTN_ASSIGN_OR_RETURN(Tensor w2, Take(t, p + "output.dense.weight", {d, ff}));
    ATTN_ASSIGN_OR_RETURN(l.b2, Take(t, p + "output.dense.bias", {d}));
    ATTN_ASSIGN_OR_RETURN(l.ln2_w, Take(t, p + "output.LayerNorm.weight", {d}));
    ATTN_ASSIGN_OR_RETURN(l.ln2_b, Take(t, p + "output.LayerNorm.bias", {d}));
    l.w1t = Transpose(w1);
    l.w2t = Transpose(w2);
    m->layers_.push_back(std::move(l));
  }
  return m;
}

TokenBatch EncoderModel::Tokenize(const std::vector<std::string>& sentences) const {
  TokenBatch b;
  b.batch = static_cast<int64_t>(sentences.size());
  std::vector<std::vector<int64_t>> rows;
  const int64_t max_tokens = std::min<int64_t>(512, config_.max_positions);
  for (const std::string& s : sentences) {
    rows.push_back(tokenizer_.Encode(s, max_tokens));
    b.lengths.push_back(static_cast<int64_t>(rows.back().size()));
    b.length = std::max(b.length, b.lengths.back());
  }
  b.ids.assign(b.batch * b.length, 0);
  for (int64_t i = 0; i < b.batch; ++i) {
    std::copy(rows[i].begin(), rows[i].end(), b.ids.begin() + i * b.length);
  }
  return b;
}

ModuleConfig EncoderModel::AttentionConfig() const {
  ModuleConfig c;
  c.variant = Variant::kMha;
  c.d_model = config_.hidden_size;
  c.num_heads = config_.num_heads;
  c.bias = true;
  return c;
}

WeightMap EncoderModel::AttentionWeights(int64_t layer) const { return attention_.at(layer); }

absl::StatusOr<Tensor> EncoderModel::Embed(const TokenBatch& batch,
                                           const LayerAttention& attention) const {
  const int64_t b = batch.batch, l = batch.length, d = config_.hidden_size;
  const int64_t ff = config_.intermediate_size;
  Tensor h({b, l, d});
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t t = 0; t < l; ++t) {
      float* row = h.data() + (i * l + t) * d;
      const int64_t id = std::clamp<int64_t>(batch.ids[i * l + t], 0, config_.vocab_size - 1);
      const float* w = word_.data() + id * d;
      const float* p = position_.data() + t * d;
      const float* y = token_type_.data();
      for (int64_t k = 0; k < d; ++k) row[k] = w[k] + p[k] + y[k];
      LayerNormRow(row, d, emb_ln_w_, emb_ln_b_, config_.layer_norm_eps);
    }
  }
  std::vector<float> inner, ffn(d);
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    ATTN_ASSIGN_OR_RETURN(Tensor a, attention(layer, h, batch.lengths));
    if (a.shape() != h.shape()) {
      return absl::InternalError(absl::StrCat("layer ", layer, ": the attention gave ",
                                              ShapeText(a.shape()), ", expected ",
                                              ShapeText(h.shape())));
    }
    const Layer& w = layers_[layer];
    for (int64_t i = 0; i < b; ++i) {
      // Only the sentence's tokens: padding rows stay as they are (masked as
      // keys, ignored as queries and by the pooling).
      const int64_t n = batch.lengths[i];
      float* rows = h.data() + i * l * d;
      const float* arows = a.data() + i * l * d;
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t k = 0; k < d; ++k) rows[t * d + k] += arows[t * d + k];
        LayerNormRow(rows + t * d, d, w.ln1_w, w.ln1_b, config_.layer_norm_eps);
      }
      inner.resize(n * ff);
      Linear(rows, n, d, w.w1t, w.b1, inner.data());
      for (float& x : inner) {
        x = static_cast<float>(0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))));
      }
      ffn.resize(n * d);
      Linear(inner.data(), n, ff, w.w2t, w.b2, ffn.data());
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t k = 0; k < d; ++k) rows[t * d + k] += ffn[t * d + k];
        LayerNormRow(rows + t * d, d, w.ln2_w, w.ln2_b, config_.layer_norm_eps);
      }
    }
  }
  Tensor out({b, d});
  for (int64_t i = 0; i < b; ++i) {
    std::vector<double> sum(d, 0.0);
    const int64_t n = batch.lengths[i];
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < d; ++k) sum[k] += h.data()[(i * l + t) * d + k];
    double norm = 0;
    for (double& x : sum) {
      x /= static_cast<double>(std::max<int64_t>(n, 1));
      norm += x * x;
    }
    norm = std::max(std::sqrt(norm), 1e-12);
    for (int64_t k = 0; k < d; ++k) out.data()[i * d + k] = static_cast<float>(sum[k] / norm);
  }
  return out;
}

LayerAttention LocalAttention(const std::vector<std::unique_ptr<AttentionModule>>& layers) {
  return [&layers](int64_t layer, const Tensor& hidden,
                   const std::vector<int64_t>& lengths) -> absl::StatusOr<Tensor> {
    if (layer < 0 || layer >= static_cast<int64_t>(layers.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, ": only ", layers.size(), " attention layers"));
    }
    ForwardInput in;
    in.query = &hidden;
    in.mask.key_lengths = lengths;
    ATTN_ASSIGN_OR_RETURN(ForwardResult r, layers[layer]->Forward(in));
    return std::move(r.output);
  };
}

std::vector<double> RowCosines(const Tensor& a, const Tensor& b) {
  const int64_t rows = a.dim(0), d = a.dim(1);
  std::vector<double> out(rows);
  for (int64_t i = 0; i < rows; ++i) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t k = 0; k < d; ++k) {
      const double x = a.data()[i * d + k], y = b.data()[i * d + k];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    out[i] = ab / std::max(std::sqrt(aa * bb), 1e-300);
  }
  return out;
}

}  // namespace attention::client
